using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;
using RowLock.TestServer;

namespace RowLock.Tests;

/// <summary>Faults on a real server: killed holders, restarts, exhausted pools, swallowed errors.</summary>
public sealed class ReliabilityTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task When_a_row_lock_holder_is_killed_the_waiter_proceeds_and_the_holders_write_is_gone()
    {
        await db.ExecuteAsync("CREATE TABLE held (id int PRIMARY KEY, v int NOT NULL); INSERT INTO held VALUES (1, 0);");
        var holder = await db.DataSource.OpenConnectionAsync();
        var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>("SELECT v FROM held WHERE id = 1", null, RowLockClause.ForUpdate);
        await holder.ExecuteAsync("UPDATE held SET v = 99 WHERE id = 1", transaction: holderTx);
        var holderPid = holder.ProcessID;

        var waiter = Task.Run(async () =>
        {
            await using var connection = await db.DataSource.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            var rows = await tx.LockRowsAsync<int>("SELECT v FROM held WHERE id = 1", null, RowLockClause.ForUpdate);
            await connection.ExecuteAsync("UPDATE held SET v = @v WHERE id = 1", new { v = rows[0] + 1 }, tx);
            await tx.CommitAsync();
            return rows[0];
        });

        while (await db.ScalarAsync<long>("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database()") == 0)
        {
            await Task.Delay(20);
        }

        await db.ExecuteAsync("SELECT pg_terminate_backend(@holderPid)", new { holderPid });
        Assert.Equal(0, await waiter.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(1, await db.ScalarAsync<int>("SELECT v FROM held WHERE id = 1"));
        await Assert.ThrowsAnyAsync<NpgsqlException>(() => holder.ExecuteAsync("SELECT 1", transaction: holderTx)); // the holder's session is gone
        holder.Dispose();
    }

    [RestartableServerFact]
    public async Task The_runner_recovers_when_the_server_restarts_between_attempts()
    {
        await using var server = await PostgresServer.StartAsync(new PostgresServerOptions { PreferLocalCluster = true });
        var database = await server.CreateDatabaseAsync("restart");
        await using var dataSource = NpgsqlDataSource.Create(database);
        await using (var setup = dataSource.CreateCommand("CREATE TABLE writes (attempt int NOT NULL)"))
        {
            await setup.ExecuteNonQueryAsync();
        }

        var options = new TransactionRunnerOptions();
        options.Retry.MaxRetryAttempts = 40;
        options.Retry.Delay = TimeSpan.FromMilliseconds(100);
        options.Retry.MaxDelay = TimeSpan.FromMilliseconds(500);
        var runner = new TransactionRunner(dataSource, options);
        var attempt = 0;
        Task? restart = null;
        await runner.RunAsync(async (tx, ct) =>
        {
            attempt++;
            await tx.Connection!.ExecuteAsync("INSERT INTO writes VALUES (@attempt)", new { attempt }, tx);
            if (attempt == 1)
            {
                restart = server.RestartAsync(TimeSpan.FromSeconds(1), ct);
                await Task.Delay(TimeSpan.FromMilliseconds(300), ct);
                await tx.Connection!.ExecuteAsync("SELECT pg_sleep(10)", transaction: tx); // the server goes away under us
            }
        });
        await restart!;

        Assert.True(attempt >= 2);
        await using var check = dataSource.CreateCommand("SELECT array_agg(attempt) FROM writes");
        Assert.Equal([attempt], (int[])(await check.ExecuteScalarAsync())!);
    }

    [RestartableServerFact]
    public async Task The_runner_fails_clearly_when_the_server_is_not_back_within_its_retry_budget()
    {
        await using var server = await PostgresServer.StartAsync(new PostgresServerOptions { PreferLocalCluster = true });
        var database = await server.CreateDatabaseAsync("down");
        await using var dataSource = NpgsqlDataSource.Create(database);
        var options = new TransactionRunnerOptions();
        options.Retry.MaxRetryAttempts = 2;
        options.Retry.Delay = TimeSpan.FromMilliseconds(50);
        var runner = new TransactionRunner(dataSource, options);

        var restart = server.RestartAsync(TimeSpan.FromSeconds(4));
        await Task.Delay(TimeSpan.FromMilliseconds(1500)); // stopped by now
        var error = await Assert.ThrowsAsync<RetryLimitExceededException>(() =>
            runner.RunAsync((tx, ct) => tx.Connection!.ExecuteAsync("SELECT 1", transaction: tx)));
        await restart;

        Assert.Equal(3, error.Attempts);
        Assert.True(RowLockPredicates.IsConnectionLoss(error.InnerException));
        Assert.Contains("failed 3 times", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, await runner.RunAsync((tx, ct) => tx.Connection!.ExecuteScalarAsync<int>("SELECT 1", transaction: tx)));
    }

    [Fact]
    public async Task An_exhausted_pool_gives_a_clear_error_or_honours_the_callers_cancellation_never_a_hang()
    {
        await using var pool = db.CreateDataSource(b =>
        {
            b.MaxPoolSize = 2;
            b.Timeout = 1;
        });
        await using var first = await pool.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("pool-1"));
        await using var second = await pool.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("pool-2"));

        var exhausted = await Assert.ThrowsAnyAsync<NpgsqlException>(() => pool.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("pool-3")));
        Assert.Contains("pool", exhausted.Message, StringComparison.OrdinalIgnoreCase);

        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            new TransactionRunner(pool).RunAsync((tx, ct) => Task.CompletedTask, cancel.Token));

        await second.DisposeAsync();
        await using var third = await pool.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("pool-3"));
    }

    /// <summary>
    /// Replaces "A_swallowed_error_is_reported_instead_of_the_25P02_that_follows" (0.1.0 reported the swallowed 23505,
    /// found through a process-wide hook that also picked up other connections' errors). Nothing per connection says
    /// which statement aborted the transaction, so the runner now says what is certain instead of guessing.
    /// </summary>
    [Fact]
    public async Task A_25P02_after_a_swallowed_error_is_reported_as_a_swallowed_error_on_the_runners_transaction()
    {
        await db.ExecuteAsync("CREATE TABLE unique_things (id int PRIMARY KEY); INSERT INTO unique_things VALUES (1);");
        var runs = 0;
        var error = await Assert.ThrowsAsync<RowLockException>(() => new TransactionRunner(db.DataSource).RunAsync(async (tx, ct) =>
        {
            runs++;
            try
            {
                await tx.Connection!.ExecuteAsync("INSERT INTO unique_things VALUES (1)", transaction: tx);
            }
            catch (PostgresException)
            {
                // user code that ignores the failure and carries on
            }

            await tx.Connection!.ExecuteAsync("INSERT INTO unique_things VALUES (2)", transaction: tx); // 25P02
        }));

        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState);
        Assert.StartsWith("The work caught a database error on the runner's transaction and continued; the transaction was aborted and rolled back.", error.Message, StringComparison.Ordinal);
        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, Assert.IsType<PostgresException>(error.InnerException).SqlState);
        Assert.Equal(1, runs);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM unique_things"));
    }

    [Fact]
    public async Task Work_that_swallows_an_error_and_returns_does_not_report_a_commit_that_never_happened()
    {
        await db.ExecuteAsync("CREATE TABLE swallowed (id int PRIMARY KEY); INSERT INTO swallowed VALUES (1);");
        var error = await Assert.ThrowsAsync<RowLockException>(() => new TransactionRunner(db.DataSource).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync("INSERT INTO swallowed VALUES (2)", transaction: tx);
            try
            {
                await tx.Connection!.ExecuteAsync("INSERT INTO swallowed VALUES (1)", transaction: tx);
            }
            catch (PostgresException)
            {
                // ignored, and the work returns as if all went well
            }
        }));

        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState); // 0.1.0 reported the swallowed 23505 (see above)
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM swallowed"));
    }

    /// <summary>
    /// Replaces "A_swallowed_serialization_failure_is_retried_whole": 0.1.0 retried it only by attributing the last error
    /// seen anywhere in the async flow, which retried other connections' 40001s too. The runner cannot know which error
    /// the work swallowed, so it does not retry: a swallowed 23505 or bug would fail the same way on every attempt.
    /// </summary>
    [Fact]
    public async Task A_swallowed_serialization_failure_is_reported_once_not_retried_blindly()
    {
        var runs = 0;
        var options = new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() };
        var error = await Assert.ThrowsAsync<RowLockException>(() => new TransactionRunner(db.DataSource, options).RunAsync(async (tx, ct) =>
        {
            runs++;
            try
            {
                await tx.Connection!.ExecuteAsync("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$", transaction: tx);
            }
            catch (PostgresException)
            {
            }
        }));

        Assert.Equal(1, runs);
        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState);
        Assert.False(RowLockPredicates.IsRetryable(error));
    }
}
