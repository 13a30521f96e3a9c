using System.ComponentModel.DataAnnotations;
using System.Data;
using System.Diagnostics.Metrics;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using Polly;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>The unit-of-work runner on a real server: real deadlocks, real serialization failures, real killed backends.</summary>
public sealed class TransactionRunnerTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private const string RaiseSerializationFailure = "DO $$ BEGIN RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure'; END $$";

    private TransactionRunner Runner(Action<TransactionRunnerOptions>? configure = null, ILogger<TransactionRunner>? logger = null, NpgsqlDataSource? dataSource = null)
    {
        var options = new TransactionRunnerOptions();
        configure?.Invoke(options);
        return new TransactionRunner(dataSource ?? db.DataSource, options, logger);
    }

    [Fact]
    public async Task Opposite_order_transfers_deadlock_and_the_loser_is_rerun_whole()
    {
        var table = "accounts_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, balance int NOT NULL); INSERT INTO {table} VALUES (1, 100), (2, 100);");
        var retries = 0;
        var runner = Runner(o => o.Retry.OnRetry = _ =>
        {
            Interlocked.Increment(ref retries);
            return default;
        });
        var bothHoldOne = new AsyncBarrier(2);

        await Workers.RaceAsync(2, async worker =>
        {
            var (from, to) = worker == 0 ? (1, 2) : (2, 1);
            var attempt = 0;
            await runner.RunAsync(async (tx, ct) =>
            {
                attempt++;
                var connection = tx.Connection!;
                await connection.ExecuteAsync(new CommandDefinition($"UPDATE {table} SET balance = balance - 10 WHERE id = @from", new { from }, tx, cancellationToken: ct));
                if (attempt == 1)
                {
                    await bothHoldOne.SignalAndWaitAsync(ct); // each holds one account: the next update closes the cycle
                }

                await connection.ExecuteAsync(new CommandDefinition($"UPDATE {table} SET balance = balance + 10 WHERE id = @to", new { to }, tx, cancellationToken: ct));
            });
        });

        Assert.Equal(1, retries);
        Assert.Equal([100, 100], await (await db.DataSource.OpenConnectionAsync()).QueryAsync<int>($"SELECT balance FROM {table} ORDER BY id"));
    }

    [Fact]
    public async Task Repeatable_read_increments_through_the_runner_are_exact_and_retries_are_counted()
    {
        var table = await db.CreateHotRowTableAsync("counter");
        var retries = 0;
        var logger = new ListLogger<TransactionRunner>();
        var runner = Runner(o =>
        {
            o.IsolationLevel = IsolationLevel.RepeatableRead;
            o.Retry.MaxRetryAttempts = 50;
            o.Retry.OnRetry = _ =>
            {
                Interlocked.Increment(ref retries);
                return default;
            };
        }, logger);

        using var meter = new MeterListener();
        var counted = 0L;
        meter.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == RowLockTelemetry.MeterName && instrument.Name == "rowlock.unit_of_work.retries")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        meter.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag is { Key: "db.response.status_code", Value: PostgresErrorCodes.SerializationFailure })
                {
                    Interlocked.Add(ref counted, value);
                }
            }
        });
        meter.Start();

        await Workers.RaceAsync(8, async _ =>
        {
            for (var i = 0; i < 25; i++)
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    var v = await tx.Connection!.QuerySingleAsync<int>(new CommandDefinition($"SELECT v FROM {table} WHERE id = 1", transaction: tx, cancellationToken: ct));
                    await tx.Connection!.ExecuteAsync(new CommandDefinition($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx, cancellationToken: ct));
                });
            }
        });

        Assert.Equal(200, await db.ScalarAsync<int>($"SELECT v FROM {table}"));
        Assert.True(retries > 0, "eight workers on one row under REPEATABLE READ must conflict");
        Assert.True(Interlocked.Read(ref counted) >= retries);
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Information && e.Message.Contains("failed with 40001; retrying in", StringComparison.Ordinal)); // Warning with a stack trace in 0.1.0
        Assert.DoesNotContain(logger.Entries, e => e.Level >= LogLevel.Warning);
    }

    [Fact]
    public async Task Without_retry_the_same_repeatable_read_race_surfaces_40001()
    {
        var table = await db.CreateHotRowTableAsync("counter");
        var runner = Runner(o =>
        {
            o.IsolationLevel = IsolationLevel.RepeatableRead;
            o.Retry.ShouldHandle = _ => ValueTask.FromResult(false);
        });
        var bothRead = new AsyncBarrier(2);
        var errors = await Workers.RaceAsync(2, async _ =>
        {
            try
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    var v = await tx.Connection!.QuerySingleAsync<int>($"SELECT v FROM {table} WHERE id = 1", transaction: tx);
                    await bothRead.SignalAndWaitAsync(ct);
                    await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx);
                });
                return null;
            }
            catch (PostgresException e)
            {
                return e.SqlState;
            }
        });

        Assert.Contains(PostgresErrorCodes.SerializationFailure, errors);
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
        var table = "uniq_" + Guid.NewGuid().ToString("N")[..8];
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
        var table = "killed_" + Guid.NewGuid().ToString("N")[..8];
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
        var runs = 0;
        var runner = Runner(o =>
        {
            o.Retry.Delay = TimeSpan.FromMinutes(1);
            o.Retry.MaxDelay = TimeSpan.FromMinutes(1);
        });
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => runner.RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync(new CommandDefinition(RaiseSerializationFailure, transaction: tx, cancellationToken: ct));
        }, cancel.Token));
        Assert.Equal(1, runs);
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
    public async Task A_null_work_delegate_is_an_argument_error()
    {
        await Assert.ThrowsAsync<ArgumentNullException>(() => Runner().RunAsync(null!));
        await Assert.ThrowsAsync<ArgumentNullException>(() => Runner().RunAsync<int>(null!));
        Assert.Throws<ArgumentNullException>(() => new TransactionRunner(null!));
    }

    [Fact]
    public void Out_of_range_retry_options_fail_with_pollys_validation_message()
    {
        var error = Assert.Throws<ValidationException>(() => Runner(o => o.Retry.MaxRetryAttempts = 0));
        Assert.Contains("The field MaxRetryAttempts must be between 1 and 2147483647.", error.Message, StringComparison.Ordinal);
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
