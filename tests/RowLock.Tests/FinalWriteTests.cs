using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Final writes that travel with COMMIT: <c>DeferUntilCommit</c> inside a runner's unit of work and
/// <c>ExecuteAndCommitAsync</c> on a transaction the caller owns. They land once, after the work, and their errors are
/// the transaction's errors: retried when retryable, never confused with the runner's own checks.
/// </summary>
public sealed class FinalWriteTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private TransactionRunner Runner(NpgsqlDataSource? dataSource = null) =>
        new(dataSource ?? db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() });

    [Fact]
    public async Task Eight_workers_incrementing_a_locked_row_with_a_deferred_update_lose_no_update()
    {
        var table = await db.CreateHotRowTableAsync("final_hot");
        var runner = Runner();

        await Workers.RaceAsync(8, async _ =>
        {
            for (var i = 0; i < 25; i++)
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    var rows = await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate, ct);
                    tx.DeferUntilCommit($"UPDATE {table} SET v = @v WHERE id = 1", new { v = rows[0] + 1 });
                });
            }
        });

        Assert.Equal(200, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task Eight_workers_without_the_lock_lose_updates_with_the_same_deferred_update()
    {
        // The control for the test above: the same read and deferred write without FOR UPDATE loses updates, so the
        // lock, not the deferral, is what keeps the count.
        var table = await db.CreateHotRowTableAsync("final_nolock");
        var runner = Runner();

        await Workers.RaceAsync(8, async _ =>
        {
            for (var i = 0; i < 25; i++)
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    var v = await tx.Connection!.ExecuteScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1", transaction: tx);
                    await Task.Yield();
                    tx.DeferUntilCommit($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 });
                });
            }
        });

        Assert.True(await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1") < 200);
    }

    [Fact]
    public async Task Deferred_writes_run_after_the_work_in_the_order_they_were_deferred_with_their_own_parameters()
    {
        var table = "final_order_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (seq serial, id int NOT NULL, note text NOT NULL)");

        await Runner().RunAsync(async (tx, ct) =>
        {
            // The same parameter names in every write: each deferred write keeps its own values.
            foreach (var id in new[] { 3, 1, 2 })
            {
                tx.DeferUntilCommit($"INSERT INTO {table} (id, note) VALUES (@id, @note)", new { id, note = "deferred" });
            }

            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id, note) VALUES (0, 'in the work')", transaction: tx);
        });

        var rows = (await db.DataSource.OpenConnection().QueryAsync<(int Id, string Note)>($"SELECT id, note FROM {table} ORDER BY seq")).ToArray();
        Assert.Equal([(0, "in the work"), (3, "deferred"), (1, "deferred"), (2, "deferred")], rows);
    }

    [Fact]
    public async Task Dapper_parameters_are_read_when_the_write_is_deferred_lists_expand_and_a_list_of_objects_runs_once_per_element()
    {
        var table = await db.CreateHotRowTableAsync("final_params");
        await db.ExecuteAsync($"INSERT INTO {table} VALUES (2, 0), (3, 0), (4, 0)");

        await Runner().RunAsync(async (tx, ct) =>
        {
            var changing = new Mutable { V = 10 };
            tx.DeferUntilCommit($"UPDATE {table} SET v = @V WHERE id = 1", changing);
            changing.V = 99; // read when deferred: 10 is written

            tx.DeferUntilCommit($"UPDATE {table} SET v = v + 1 WHERE id = ANY(@ids)", new { ids = new[] { 2, 3 } });
            tx.DeferUntilCommit($"UPDATE {table} SET v = v + @by WHERE id = @id", new[] { new { id = 4, by = 5 }, new { id = 4, by = 7 } });

            var dynamic = new DynamicParameters();
            dynamic.Add("id", 3);
            tx.DeferUntilCommit($"UPDATE {table} SET v = v * 100 WHERE id = @id", dynamic);
            await Task.CompletedTask;
        });

        var values = (await db.DataSource.OpenConnection().QueryAsync<(int Id, int V)>($"SELECT id, v FROM {table} ORDER BY id")).ToArray();
        Assert.Equal([(1, 10), (2, 1), (3, 100), (4, 12)], values);
    }

    private sealed class Mutable
    {
        public int V { get; set; }
    }

    [Fact]
    public async Task A_serialization_failure_in_a_deferred_write_reruns_the_whole_unit_and_lands_once()
    {
        var table = await db.CreateHotRowTableAsync("final_retry");
        var sequence = table + "_calls";
        await db.ExecuteAsync($"""
            CREATE SEQUENCE {sequence};
            CREATE FUNCTION {table}_fail_first() RETURNS int LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('{sequence}') = 1 THEN RAISE EXCEPTION 'first call fails' USING ERRCODE = 'serialization_failure'; END IF;
                RETURN 1;
            END $$;
            """);
        var runs = 0;

        await Runner().RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = v + 1 WHERE id = 1", transaction: tx);
            tx.DeferUntilCommit($"UPDATE {table} SET v = v + {table}_fail_first() WHERE id = 1");
        });

        Assert.Equal(2, runs);
        Assert.Equal(2, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task A_deferred_write_that_divides_by_zero_is_reported_as_itself_not_as_a_foreign_transaction()
    {
        // The runner's own check fails with 22012 when the transaction is not the one it began; a deferred write's
        // 22012 must come out as the write's error, with nothing committed.
        var table = await db.CreateHotRowTableAsync("final_22012");

        var e = await Assert.ThrowsAsync<PostgresException>(() => Runner().RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = 5 WHERE id = 1", transaction: tx);
            tx.DeferUntilCommit($"UPDATE {table} SET v = 1 / (v - 5) WHERE id = 1");
        }));

        Assert.Equal(PostgresErrorCodes.DivisionByZero, e.SqlState);
        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task A_unique_violation_in_a_deferred_write_propagates_once_and_rolls_back_the_work()
    {
        var table = await db.CreateHotRowTableAsync("final_23505");
        var runs = 0;

        var e = await Assert.ThrowsAsync<PostgresException>(() => Runner().RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = 7 WHERE id = 1", transaction: tx);
            tx.DeferUntilCommit($"INSERT INTO {table} VALUES (1, 0)");
        }));

        Assert.Equal(PostgresErrorCodes.UniqueViolation, e.SqlState);
        Assert.Equal(1, runs);
        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task A_backend_killed_while_a_deferred_write_runs_is_a_certain_rollback_rerun_and_applied_once()
    {
        var table = await db.CreateHotRowTableAsync("final_killed");
        var sequence = table + "_calls";
        await db.ExecuteAsync($"""
            CREATE SEQUENCE {sequence};
            CREATE FUNCTION {table}_slow_first() RETURNS int LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('{sequence}') = 1 THEN PERFORM pg_sleep(30); END IF;
                RETURN 1;
            END $$;
            """);
        var runs = 0;
        var pid = 0;
        var killer = db.TerminateWhenSleepingAsync(() => Volatile.Read(ref pid));

        await Runner().RunAsync(async (tx, ct) =>
        {
            if (Interlocked.Increment(ref runs) == 1)
            {
                Volatile.Write(ref pid, tx.Connection!.ProcessID);
            }

            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = v + 1 WHERE id = 1", transaction: tx);
            tx.DeferUntilCommit($"UPDATE {table} SET v = v + {table}_slow_first() WHERE id = 1");
        }).WaitAsync(TimeSpan.FromSeconds(60));
        await killer.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(2, runs);
        Assert.Equal(2, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task A_raw_commit_and_begin_in_the_work_is_still_refused_and_the_deferred_write_rolled_back()
    {
        var table = await db.CreateHotRowTableAsync("final_foreign");

        await Assert.ThrowsAsync<InvalidOperationException>(() => Runner().RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = 1 WHERE id = 1; COMMIT; BEGIN", transaction: tx);
            tx.DeferUntilCommit($"UPDATE {table} SET v = 2 WHERE id = 1");
        }));

        Assert.Equal(1, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("-- only a comment")]
    [InlineData("UPDATE t SET v = 1;")]
    [InlineData("UPDATE t SET v = 1; UPDATE t SET v = 2")]
    [InlineData("COMMIT")]
    [InlineData("commit and chain")]
    [InlineData("END")]
    [InlineData("ROLLBACK")]
    [InlineData("abort")]
    [InlineData("BEGIN")]
    [InlineData("START TRANSACTION")]
    [InlineData("SAVEPOINT s")]
    [InlineData("RELEASE SAVEPOINT s")]
    [InlineData("PREPARE TRANSACTION 'x'")]
    [InlineData("UPDATE t SET note = 'unterminated")]
    public async Task A_write_that_cannot_travel_before_commit_is_refused_and_nothing_is_sent(string sql)
    {
        var table = await db.CreateHotRowTableAsync("final_refused");

        await Runner().RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = 1 WHERE id = 1", transaction: tx);
            Assert.Throws<ArgumentException>("sql", () => tx.DeferUntilCommit(sql));
        });

        await using (var connection = await db.DataSource.OpenConnectionAsync())
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await Assert.ThrowsAsync<ArgumentException>("sql", () => tx.ExecuteAndCommitAsync(sql));
            Assert.Equal(1, await connection.ExecuteScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1", transaction: tx)); // still usable
        }

        Assert.Equal(1, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task Deferring_on_a_transaction_no_runner_is_running_is_refused_also_on_a_reused_transaction_object()
    {
        var table = await db.CreateHotRowTableAsync("final_outside");
        await using var dataSource = db.CreateDataSource(b => b.MaxPoolSize = 1);
        NpgsqlTransaction? runnersTransaction = null;
        await Runner(dataSource).RunAsync(async (tx, ct) =>
        {
            runnersTransaction = tx;
            await Task.CompletedTask;
        });

        // Npgsql may hand the same transaction object out again on the same physical connection.
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var plain = await connection.BeginTransactionAsync();
        Assert.Throws<InvalidOperationException>(() => plain.DeferUntilCommit($"UPDATE {table} SET v = 1 WHERE id = 1"));
        Assert.Throws<InvalidOperationException>(() => runnersTransaction!.DeferUntilCommit($"UPDATE {table} SET v = 1 WHERE id = 1"));
        await plain.CommitAsync();

        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task ExecuteAndCommitAsync_commits_the_callers_transaction_with_its_last_write_in_one_call()
    {
        var table = await db.CreateHotRowTableAsync("final_plain");
        await db.ExecuteAsync($"INSERT INTO {table} VALUES (2, 0)");

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var rows = await tx.LockRowsAsync<int>($"SELECT v FROM {table} ORDER BY id", null, RowLockClause.ForUpdate);
        var affected = await tx.ExecuteAndCommitAsync($"UPDATE {table} SET v = v + @by", new { by = rows.Count + 1 });

        Assert.Equal(2, affected);
        Assert.Equal(6, await db.ScalarAsync<int>($"SELECT sum(v) FROM {table}"));
        await Assert.ThrowsAsync<InvalidOperationException>(() => tx.LockRowsAsync<int>($"SELECT v FROM {table}", null, RowLockClause.ForUpdate));
    }

    [Fact]
    public async Task ExecuteAndCommitAsync_whose_write_fails_commits_nothing_and_leaves_the_transaction_to_roll_back()
    {
        var table = await db.CreateHotRowTableAsync("final_plain_fail");

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await connection.ExecuteAsync($"UPDATE {table} SET v = 9 WHERE id = 1", transaction: tx);
            var e = await Assert.ThrowsAsync<PostgresException>(() => tx.ExecuteAndCommitAsync($"INSERT INTO {table} VALUES (1, 0)"));
            Assert.Equal(PostgresErrorCodes.UniqueViolation, e.SqlState);
            var aborted = await Assert.ThrowsAsync<PostgresException>(() => connection.ExecuteAsync("SELECT 1", transaction: tx));
            Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, aborted.SqlState);
        }

        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT 1")); // the connection is usable after the rollback
    }

    [Fact]
    public async Task ExecuteAndCommitAsync_refuses_the_runners_transaction_and_a_cancelled_call_sends_nothing()
    {
        var table = await db.CreateHotRowTableAsync("final_plain_refused");

        await Runner().RunAsync(async (tx, ct) =>
        {
            await Assert.ThrowsAsync<InvalidOperationException>(() => tx.ExecuteAndCommitAsync($"UPDATE {table} SET v = 1 WHERE id = 1"));
        });

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var plain = await connection.BeginTransactionAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => plain.ExecuteAndCommitAsync($"UPDATE {table} SET v = 2 WHERE id = 1", cancellationToken: new CancellationToken(true)));
        await plain.RollbackAsync();

        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task ExecuteAndCommitAsync_with_the_backend_killed_during_commit_reports_an_unknown_outcome()
    {
        var table = await db.CreateSlowCommitTableAsync("final_plain_slow");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        var pid = connection.ProcessID;
        var killer = db.TerminateWhenSleepingAsync(() => Volatile.Read(ref pid));

        await using var tx = await connection.BeginTransactionAsync();
        await Assert.ThrowsAsync<CommitOutcomeUnknownException>(() => tx.ExecuteAndCommitAsync($"INSERT INTO {table} VALUES (1)").WaitAsync(TimeSpan.FromSeconds(60)));
        await killer.WaitAsync(TimeSpan.FromSeconds(60));
    }
}
