using System.Diagnostics;
using Npgsql;

namespace RowLock.Samples.Lab;

/// <summary>A concurrency problem shown twice: as teams often write it, and with RowLock.</summary>
public abstract class Scenario
{
    /// <summary>The name used by <c>--scenario</c>.</summary>
    public abstract string Name { get; }

    /// <summary>What must hold at the end, in words.</summary>
    public abstract string Invariant { get; }

    /// <summary>Creates the tables (in the lab's own database) and fills them.</summary>
    protected abstract Task SetUpAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken);

    /// <summary>The naive code, without RowLock.</summary>
    protected abstract Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken);

    /// <summary>The RowLock idiom for the same job.</summary>
    protected abstract Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken);

    /// <summary>
    /// Runs both sides on freshly set-up tables. Each side runs its operations through an <see cref="ErrorCounter"/>, so
    /// database errors are counted and shown; should one still escape a side (a scenario that forgot to count it), the
    /// side is reported as stopped by that error, with its invariant broken, and the lab goes on to the next side.
    /// </summary>
    public async Task<ScenarioResult> RunAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        await SetUpAsync(dataSource, options, cancellationToken);
        var naive = await GuardAsync(() => RunNaiveAsync(dataSource, options, cancellationToken));
        await SetUpAsync(dataSource, options, cancellationToken);
        var rowLock = await GuardAsync(() => RunRowLockAsync(dataSource, options, cancellationToken));
        return new ScenarioResult(Name, options.Workers, Invariant, naive, rowLock);
    }

    private static async Task<SideResult> GuardAsync(Func<Task<SideResult>> side)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            return await side();
        }
        catch (Exception e) when (ErrorCounter.IsDatabaseError(e))
        {
            var errors = new ErrorCounter();
            errors.Record(e);
            return new SideResult(errors, 0, false, $"side stopped by an uncounted error: {e.Message}", clock.Elapsed);
        }
    }

    /// <summary>
    /// Starts <paramref name="workers"/> tasks together so that they really race, and waits for all of them, also when
    /// one fails (so no worker is still running when the next side resets the tables).
    /// </summary>
    protected static async Task<T[]> RaceAsync<T>(int workers, Func<int, Task<T>> work)
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var tasks = Enumerable.Range(0, workers).Select(async i =>
        {
            await gate.Task;
            return await work(i);
        }).ToArray();
        gate.SetResult();
        return await Task.WhenAll(tasks);
    }

    /// <summary>Times an async action.</summary>
    protected static async Task<(T Value, TimeSpan Elapsed)> TimeAsync<T>(Func<Task<T>> action)
    {
        var clock = Stopwatch.StartNew();
        var value = await action();
        return (value, clock.Elapsed);
    }

    /// <summary>A runner whose retries are counted into <paramref name="retries"/>.</summary>
    protected static TransactionRunner CountingRunner(NpgsqlDataSource dataSource, StrongBox<int> retries, System.Data.IsolationLevel isolation = System.Data.IsolationLevel.ReadCommitted) =>
        new(dataSource, CountingOptions(retries, isolation));

    /// <summary>Runner options (up to 20 retries) whose retries are counted into <paramref name="retries"/>; shared by the EF lab's runner.</summary>
    protected static TransactionRunnerOptions CountingOptions(StrongBox<int> retries, System.Data.IsolationLevel isolation = System.Data.IsolationLevel.ReadCommitted)
    {
        var options = new TransactionRunnerOptions { IsolationLevel = isolation };
        options.Retry.MaxRetryAttempts = 20;
        options.Retry.OnRetry = _ =>
        {
            Interlocked.Increment(ref retries.Value);
            return default;
        };
        return options;
    }

    /// <summary>A mutable box for counters shared by workers.</summary>
    protected sealed class StrongBox<T>
    {
        public T Value = default!;
    }
}
