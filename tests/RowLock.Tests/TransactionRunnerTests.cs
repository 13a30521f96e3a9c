using Dapper;
using Npgsql;
using Polly;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// The unit-of-work runner on a real server, direct connections: exhaustion, what is not retried, killed backends,
/// cancellation, refusals. Racing workers (deadlocks, serialization failures, lock helpers inside units of work) are
/// the runner contract (TransactionRunnerContract), run on every endpoint; what needs no server is in
/// TransactionRunnerWithoutServerTests.
/// </summary>
public sealed class TransactionRunnerTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private const string RaiseSerializationFailure = "DO $$ BEGIN RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure'; END $$";

    private TransactionRunner Runner(Action<TransactionRunnerOptions>? configure = null, NpgsqlDataSource? dataSource = null)
    {
        var options = new TransactionRunnerOptions();
        configure?.Invoke(options);
        return new TransactionRunner(dataSource ?? db.DataSource, options);
    }

    [Fact]
    public async Task Exhausted_retries_throw_with_attempts_and_sqlstate_and_delays_grow_to_the_cap()
    {
        var clock = new InstantTimeProvider();
        var runs = 0;
        var runner = Runner(o =>
        {
            o.TimeProvider = clock;
            o.Retry.MaxRetryAttempts = 5;
            o.Retry.Delay = TimeSpan.FromMilliseconds(10);
            o.Retry.MaxDelay = TimeSpan.FromMilliseconds(100);
            o.Retry.UseJitter = false;
        });

        var error = await Assert.ThrowsAsync<RetryLimitExceededException>(() => runner.RunAsync(async (tx, ct) =>
        {
            Interlocked.Increment(ref runs);
            await tx.Connection!.ExecuteAsync(new CommandDefinition(RaiseSerializationFailure, transaction: tx, cancellationToken: ct));
        }));

        Assert.Equal(6, runs);
        Assert.Equal(6, error.Attempts);
        Assert.Equal(PostgresErrorCodes.SerializationFailure, error.SqlState);
        Assert.Equal(PostgresErrorCodes.SerializationFailure, Assert.IsType<PostgresException>(error.InnerException).SqlState);
        Assert.Contains("failed 6 times; the last failure was 40001 serialization_failure", error.Message, StringComparison.Ordinal);
        Assert.Equal([10, 20, 40, 80, 100], clock.Delays.Select(d => d.TotalMilliseconds));
    }

    [Fact]
    public async Task Jittered_delays_never_exceed_the_cap()
    {
        var clock = new InstantTimeProvider();
        var runner = Runner(o =>
        {
            o.TimeProvider = clock;
            o.Retry.MaxRetryAttempts = 12;
            o.Retry.MaxDelay = TimeSpan.FromMilliseconds(200);
        });
        await Assert.ThrowsAsync<RetryLimitExceededException>(() => runner.RunAsync((tx, ct) => tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx)));
        Assert.Equal(12, clock.Delays.Count);
        Assert.All(clock.Delays, d => Assert.InRange(d.TotalMilliseconds, 0, 200));
    }

    [Fact]
    public async Task A_non_retryable_error_reaches_the_caller_unchanged_after_one_run()
    {
        var table = TestTables.Unique("uniq");
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY); INSERT INTO {table} VALUES (1);");
        var runs = 0;
        var error = await Assert.ThrowsAsync<PostgresException>(() => Runner().RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
        }));
        Assert.Equal(PostgresErrorCodes.UniqueViolation, error.SqlState);
        Assert.Equal(1, runs);
    }

    [Fact]
    public async Task A_statement_timeout_is_not_retried_and_the_connection_stays_usable()
    {
        await using var pool = db.CreateDataSource(b => b.MaxPoolSize = 1);
        var runs = 0;
        var error = await Assert.ThrowsAsync<PostgresException>(() => Runner(dataSource: pool).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync("SET LOCAL statement_timeout = 50; SELECT pg_sleep(5)", transaction: tx);
        }));
        Assert.Equal(PostgresErrorCodes.QueryCanceled, error.SqlState);
        Assert.Equal(1, runs);
        Assert.Equal(42, await Runner(dataSource: pool).RunAsync((tx, ct) => tx.Connection!.ExecuteScalarAsync<int>("SELECT 42", transaction: tx)));
    }

    [Fact]
    public async Task A_backend_killed_during_work_is_rerun_on_a_new_connection_without_partial_writes()
    {
        var table = TestTables.Unique("killed");
        await db.ExecuteAsync($"CREATE TABLE {table} (attempt int NOT NULL, backend int NOT NULL)");
        var attempt = 0;
        var backends = new List<int>();
        await Runner(o => o.TimeProvider = new InstantTimeProvider()).RunAsync(async (tx, ct) =>
        {
            attempt++;
            var connection = tx.Connection!;
            var pid = await connection.ExecuteScalarAsync<int>("SELECT pg_backend_pid()", transaction: tx);
            backends.Add(pid);
            await connection.ExecuteAsync($"INSERT INTO {table} VALUES (@attempt, @pid)", new { attempt, pid }, tx);
            if (attempt == 1)
            {
                await db.ExecuteAsync("SELECT pg_terminate_backend(@pid)", new { pid });
            }

            await connection.ExecuteAsync("SELECT 1", transaction: tx);
        });

        Assert.Equal(2, attempt);
        Assert.NotEqual(backends[0], backends[1]);
        Assert.Equal([2], await (await db.DataSource.OpenConnectionAsync()).QueryAsync<int>($"SELECT attempt FROM {table}"));
    }

    [Fact]
    public async Task Cancelling_during_a_backoff_delay_throws_operation_canceled_at_once()
    {
        var clock = new ObservedFakeClock();
        var started = clock.Fake.GetUtcNow();
        var runs = 0;
        var runner = Runner(o =>
        {
            o.TimeProvider = clock;
            o.Retry.Delay = TimeSpan.FromMinutes(1);
            o.Retry.MaxDelay = TimeSpan.FromMinutes(1);
        });
        using var cancel = new CancellationTokenSource();
        var run = runner.RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync(new CommandDefinition(RaiseSerializationFailure, transaction: tx, cancellationToken: ct));
        }, cancel.Token);

        // The first run failed with 40001 and the runner is waiting out its backoff on the fake clock, which never moves.
        await clock.NextTimerAsync();
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.WaitAsync(TimeSpan.FromSeconds(30))); // a TimeoutException fails it
        Assert.Equal(1, runs);
        Assert.Equal(started, clock.Fake.GetUtcNow());
    }

    [Fact]
    public async Task Cancelling_during_a_lock_wait_cancels_the_server_wait_and_returns_a_clean_connection()
    {
        var table = await db.CreateHotRowTableAsync("counter");
        await using var pool = db.CreateDataSource(b => b.MaxPoolSize = 1);
        await using var holder = await db.DataSource.OpenConnectionAsync();
        await using var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate);

        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Runner(dataSource: pool).RunAsync(
            (tx, ct) => tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate, ct), cancel.Token));

        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database()"));
        await holderTx.RollbackAsync();
        Assert.Equal([0], await Runner(dataSource: pool).RunAsync((tx, ct) => tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait(), ct)));
    }

    [Fact]
    public async Task Nested_units_of_work_are_refused()
    {
        var runner = Runner();
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => runner.RunAsync((tx, ct) => runner.RunAsync((inner, ct2) => Task.CompletedTask, ct)));
        Assert.StartsWith("RunAsync was called inside the work of another RunAsync.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_background_task_started_inside_a_work_may_run_its_own_unit_of_work_after_that_work_has_committed()
    {
        // A timer, a lazily started singleton loop or a fire-and-forget task created inside the work captures the work's
        // execution context; once the unit of work is over, its own units of work are not nested in anything.
        var runner = Runner();
        var outerDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task? later = null;
        await runner.RunAsync((tx, ct) =>
        {
            later = Task.Run(async () =>
            {
                await outerDone.Task;
                await runner.RunAsync((inner, ct2) => Task.CompletedTask);
            }, CancellationToken.None);
            return Task.CompletedTask;
        });
        outerDone.SetResult();
        await later!.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task An_ambient_transaction_scope_is_refused()
    {
        using var scope = new System.Transactions.TransactionScope(System.Transactions.TransactionScopeAsyncFlowOption.Enabled);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner().RunAsync((tx, ct) => Task.CompletedTask));
        Assert.Contains("ambient System.Transactions transaction", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Work_that_commits_the_runners_transaction_itself_is_refused()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner().RunAsync((tx, ct) => tx.CommitAsync(ct)));
        Assert.StartsWith("The work committed or rolled back the runner's transaction itself.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddRowLockRetry_retries_a_whole_transaction_in_a_users_own_pipeline()
    {
        var pipeline = new ResiliencePipelineBuilder { TimeProvider = new InstantTimeProvider() }
            .AddRowLockRetry(new RowLockRetryStrategyOptions { MaxRetryAttempts = 3 })
            .Build();
        var runs = 0;
        await pipeline.ExecuteAsync(async ct =>
        {
            runs++;
            await using var connection = await db.DataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            if (runs < 3)
            {
                await connection.ExecuteAsync(RaiseSerializationFailure, transaction: tx);
            }

            await tx.CommitAsync(ct);
        });
        Assert.Equal(3, runs);
    }
}
