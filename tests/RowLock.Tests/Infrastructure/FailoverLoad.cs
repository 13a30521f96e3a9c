using System.Collections.Concurrent;
using System.Globalization;
using Npgsql;

namespace RowLock.Tests.Infrastructure;

/// <summary>What callers of <see cref="TransactionRunner.RunAsync(Func{NpgsqlTransaction, CancellationToken, Task}, CancellationToken)"/> saw during a fault, per operation id.</summary>
public sealed class CallerOutcomes
{
    public ConcurrentDictionary<Guid, string> Acknowledged { get; } = new();

    public ConcurrentDictionary<Guid, string> Unknown { get; } = new();

    public ConcurrentDictionary<Guid, RetryLimitExceededException> Exhausted { get; } = new();

    public ConcurrentQueue<Exception> Unexpected { get; } = new();

    private readonly object _gate = new();

    public int Operations => Acknowledged.Count + Unknown.Count + Exhausted.Count + Unexpected.Count;

    /// <summary>The longest single call: how long a caller waited through the fault (the retry budget it used).</summary>
    public TimeSpan Longest { get; private set; }

    /// <summary>Runs one operation and files its outcome under <paramref name="id"/>.</summary>
    public async Task RecordAsync(Guid id, string kind, Func<Task> run)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            await run();
            Acknowledged[id] = kind;
        }
        catch (CommitOutcomeUnknownException)
        {
            Unknown[id] = kind;
        }
        catch (RetryLimitExceededException e)
        {
            Exhausted[id] = e;
        }
        catch (Exception e)
        {
            Unexpected.Enqueue(e);
        }

        lock (_gate)
        {
            if (clock.Elapsed > Longest)
            {
                Longest = clock.Elapsed;
            }
        }
    }

    /// <summary>The unexpected errors, grouped by type and first line, most frequent first (for assertion messages).</summary>
    public string DescribeUnexpected() => string.Join("\n", Unexpected
        .GroupBy(e => $"{e.GetType().Name}: {e.Message.Split('\n')[0]} (inner: {e.InnerException?.GetType().Name}: {e.InnerException?.Message.Split('\n')[0]})")
        .OrderByDescending(g => g.Count())
        .Select(g => string.Create(CultureInfo.InvariantCulture, $"{g.Count()} x {g.Key}")));
}

/// <summary>Sizes of the fault tests: the default run is short; <c>ROWLOCK_FAILOVER_SECONDS</c> makes the load run that long, with a failover every 20 s.</summary>
public static class FaultTestSize
{
    public static int? LoadSeconds =>
        int.TryParse(Environment.GetEnvironmentVariable("ROWLOCK_FAILOVER_SECONDS"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) && s > 0 ? s : null;
}
