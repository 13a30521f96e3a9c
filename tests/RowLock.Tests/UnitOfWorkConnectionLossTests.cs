using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Sessions that end before COMMIT was sent (killed, timed out, closed by the server while pooled) roll back for
/// certain, so the runner re-runs the unit of work on a fresh connection and its effect lands exactly once.
/// </summary>
public sealed class UnitOfWorkConnectionLossTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private TransactionRunner Runner(NpgsqlDataSource? dataSource = null) =>
        new(dataSource ?? db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() });

    private async Task<string> CreateWritesTableAsync()
    {
        var table = "writes_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (attempt int NOT NULL)");
        return table;
    }

    private async Task<int[]> AttemptsWrittenAsync(string table)
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        return [.. await connection.QueryAsync<int>($"SELECT attempt FROM {table} ORDER BY attempt")];
    }

    /// <summary>Terminates a backend from another session and waits until it has exited (it sends FATAL 57P01 first).</summary>
    [Fact]
    public async Task A_backend_killed_between_the_works_last_statement_and_COMMIT_is_rerun_and_applied_once()
    {
        var table = await CreateWritesTableAsync();
        var attempt = 0;

        await Runner().RunAsync(async (tx, ct) =>
        {
            attempt++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (@attempt)", new { attempt }, tx);
            if (attempt == 1)
            {
                await db.TerminateBackendAsync(tx.Connection!.ProcessID); // the work is done; COMMIT has not been sent
            }
        });

        Assert.Equal(2, attempt);
        Assert.Equal(new[] { 2 }, await AttemptsWrittenAsync(table)); // the first attempt's write was rolled back
    }

    [Fact]
    public async Task A_pooled_connection_ended_by_idle_session_timeout_is_replaced_and_the_work_applied_once()
    {
        var table = await CreateWritesTableAsync();
        await using var pool = db.CreateDataSource(b =>
        {
            b.MaxPoolSize = 1;
            b.Options = "-c idle_session_timeout=200";
        });
        await using (var warm = await pool.OpenConnectionAsync())
        {
            await warm.ExecuteAsync("SELECT 1"); // back to the pool, where the server will end it
        }

        await Task.Delay(TimeSpan.FromMilliseconds(800)); // the server sends FATAL 57P05 and closes the idle session
        var runs = 0;
        await Runner(pool).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (@runs)", new { runs }, tx);
        });

        Assert.Equal(new[] { runs }, await AttemptsWrittenAsync(table));
    }

    [Fact]
    public async Task An_idle_in_transaction_timeout_during_the_work_is_rerun_on_a_fresh_connection()
    {
        var table = await CreateWritesTableAsync();
        var attempt = 0;

        await Runner().RunAsync(async (tx, ct) =>
        {
            attempt++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (@attempt)", new { attempt }, tx);
            if (attempt == 1)
            {
                var pid = tx.Connection!.ProcessID;
                await tx.Connection!.ExecuteAsync("SET LOCAL idle_in_transaction_session_timeout = 100", transaction: tx);
                while (await db.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE pid = @pid", new { pid }) > 0)
                {
                    await Task.Delay(50, ct); // slow client-side work: the server ends the idle session (FATAL 25P03)
                }
            }

            await tx.Connection!.ExecuteAsync("SELECT 1", transaction: tx);
        }).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(2, attempt);
        Assert.Equal(new[] { 2 }, await AttemptsWrittenAsync(table)); // the first attempt's write was rolled back
    }

    [Fact]
    public async Task Work_that_catches_a_lost_connection_and_returns_is_rerun_not_blamed()
    {
        var table = await CreateWritesTableAsync();
        var attempt = 0;

        await Runner().RunAsync(async (tx, ct) =>
        {
            attempt++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (@attempt)", new { attempt }, tx);
            if (attempt == 1)
            {
                try
                {
                    await tx.Connection!.ExecuteAsync("SELECT pg_terminate_backend(pg_backend_pid())", transaction: tx);
                }
                catch (NpgsqlException)
                {
                    // user code that logs and carries on
                }
            }
        });

        Assert.Equal(2, attempt);
        Assert.Equal(new[] { 2 }, await AttemptsWrittenAsync(table)); // the first attempt's write was rolled back
    }

    [Fact]
    public async Task With_connection_loss_retry_off_a_lost_connection_is_reported_as_such()
    {
        var options = new TransactionRunnerOptions { Retry = { RetryOnConnectionLoss = false } };
        var runs = 0;
        var error = await Assert.ThrowsAnyAsync<NpgsqlException>(() => new TransactionRunner(db.DataSource, options).RunAsync(async (tx, ct) =>
        {
            runs++;
            try
            {
                await tx.Connection!.ExecuteAsync("SELECT pg_terminate_backend(pg_backend_pid())", transaction: tx);
            }
            catch (NpgsqlException)
            {
            }
        }));

        Assert.Equal(1, runs);
        Assert.True(RowLockPredicates.IsConnectionLoss(error));
        Assert.True(error.IsTransient);
    }

    [Fact]
    public async Task A_backend_killed_while_COMMIT_is_in_flight_is_an_unknown_outcome_and_never_retried()
    {
        var table = await db.CreateSlowCommitTableAsync("slow_commit");
        var runs = 0;
        var pid = 0;
        var killer = db.TerminateWhenSleepingAsync(() => Volatile.Read(ref pid));

        await Assert.ThrowsAsync<CommitOutcomeUnknownException>(() => Runner().RunAsync(async (tx, ct) =>
        {
            runs++;
            Volatile.Write(ref pid, tx.Connection!.ProcessID);
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
        }).WaitAsync(TimeSpan.FromSeconds(60)));
        await killer.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(1, runs);
    }
}
