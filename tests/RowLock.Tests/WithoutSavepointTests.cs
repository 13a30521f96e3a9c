using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// <c>WithoutSavepoint()</c>: NOWAIT and timed locks sent as plain statements, which spend no subtransaction but leave the
/// caller's transaction aborted when the lock is refused. Real server, a second connection holding the row.
/// </summary>
public sealed class WithoutSavepointTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    // xmax of a row locked in this transaction: the top-level xid when no savepoint was used, a subtransaction's otherwise.
    private const string SubxidCount =
        "SELECT count(DISTINCT xmax::text) FILTER (WHERE xmax::text <> (pg_current_xact_id()::text::bigint % 4294967296)::text) FROM {0} WHERE id <= @n";

    [Fact]
    public async Task A_refused_nowait_lock_without_savepoint_aborts_the_transaction_while_with_a_savepoint_it_goes_on()
    {
        var table = await db.CreateHotRowTableAsync("sp");
        await using var holder = await db.DataSource.OpenConnectionAsync();
        await using var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate);

        // With the savepoint (the default): the editor's transaction survives the refusal.
        await using var kept = await db.DataSource.OpenConnectionAsync();
        await using var keptTx = await kept.BeginTransactionAsync();
        await Assert.ThrowsAsync<LockNotAvailableException>(() =>
            keptTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait()));
        Assert.Equal(1, await kept.ExecuteScalarAsync<int>("SELECT 1", transaction: keptTx));

        // Without: the same refusal is typed the same way, but the transaction is aborted and says so.
        await using var editor = await db.DataSource.OpenConnectionAsync();
        await using var editorTx = await editor.BeginTransactionAsync();
        await editor.ExecuteAsync($"INSERT INTO {table} VALUES (2, 0)", transaction: editorTx);
        var error = await Assert.ThrowsAsync<LockNotAvailableException>(() =>
            editorTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait().WithoutSavepoint()));
        Assert.StartsWith("55P03 lock_not_available: FOR UPDATE NOWAIT (without savepoint) could not lock a row", error.Message, StringComparison.Ordinal);
        Assert.Contains("Your transaction is aborted", error.Message, StringComparison.Ordinal);
        Assert.Equal(LockNotAvailableException.RowMessage, error.UserMessage);
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, error.PostgresException?.SqlState);

        var next = await Assert.ThrowsAsync<PostgresException>(() => editor.ExecuteScalarAsync<int>("SELECT 1", transaction: editorTx));
        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, next.SqlState);
        await editorTx.RollbackAsync();
        Assert.Equal(1, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }

    [Fact]
    public async Task A_nowait_lock_without_savepoint_really_locks_the_row()
    {
        var table = await db.CreateHotRowTableAsync("sp");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var rows = await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = @id", new { id = 1 }, RowLockClause.ForUpdate.NoWait().WithoutSavepoint());
        Assert.Equal([0], rows);

        await using var other = await db.DataSource.OpenConnectionAsync();
        await using var otherTx = await other.BeginTransactionAsync();
        var refused = await Assert.ThrowsAsync<PostgresException>(() =>
            other.ExecuteScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1 FOR UPDATE NOWAIT", transaction: otherTx));
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, refused.SqlState);
        await otherTx.RollbackAsync();

        // The holder's transaction is in good shape: it writes and commits.
        await connection.ExecuteAsync($"UPDATE {table} SET v = 1 WHERE id = 1", transaction: tx);
        await tx.CommitAsync();
        Assert.Equal(1, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task A_hundred_locks_one_by_one_spend_a_hundred_subtransaction_xids_with_savepoints_and_none_without()
    {
        var table = "sp_many_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); INSERT INTO {table} (id) SELECT g FROM generate_series(1, 100) g;");

        async Task<long> SubxidsAsync(RowLockClause clause)
        {
            await using var connection = await db.DataSource.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            for (var id = 1; id <= 100; id++)
            {
                Assert.Single(await tx.LockRowsAsync<int>($"SELECT id FROM {table} WHERE id = @id", new { id }, clause));
            }

            var subxids = await connection.ExecuteScalarAsync<long>(string.Format(System.Globalization.CultureInfo.InvariantCulture, SubxidCount, table), new { n = 100 }, tx);
            await tx.RollbackAsync();
            return subxids;
        }

        // 100 is past PostgreSQL's 64 cached subtransactions per backend: the "subtransaction cliff".
        Assert.Equal(100, await SubxidsAsync(RowLockClause.ForUpdate.NoWait()));
        Assert.Equal(100, await SubxidsAsync(RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromSeconds(5))));
        Assert.Equal(0, await SubxidsAsync(RowLockClause.ForUpdate.NoWait().WithoutSavepoint()));
        Assert.Equal(0, await SubxidsAsync(RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromSeconds(5)).WithoutSavepoint()));
    }

    [Fact]
    public async Task Locking_many_rows_in_one_statement_spends_one_subtransaction_xid()
    {
        var table = "sp_batch_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); INSERT INTO {table} (id) SELECT g FROM generate_series(1, 100) g;");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var rows = await tx.LockRowsByKeyAsync<dynamic, int>(table, "id", Enumerable.Range(1, 100), RowLockClause.ForUpdate.NoWait());
        Assert.Equal(100, rows.Count);
        Assert.Equal(1, await connection.ExecuteScalarAsync<long>(string.Format(System.Globalization.CultureInfo.InvariantCulture, SubxidCount, table), new { n = 100 }, tx));

        var more = await tx.LockRowsByKeyAsync<dynamic, int>(table, "id", Enumerable.Range(1, 100), RowLockClause.ForUpdate.NoWait().WithoutSavepoint());
        Assert.Equal(100, more.Count);
        await tx.CommitAsync();
    }

    [Fact]
    public async Task A_timed_lock_without_savepoint_puts_the_callers_lock_timeout_back_on_success()
    {
        var table = await db.CreateHotRowTableAsync("sp");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("SET LOCAL lock_timeout = '7s'", transaction: tx);
        var rows = await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null,
            RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromMilliseconds(300)).WithoutSavepoint());
        Assert.Equal([0], rows);
        Assert.Equal("7s", await connection.ExecuteScalarAsync<string>("SHOW lock_timeout", transaction: tx));

        await using var other = await db.DataSource.OpenConnectionAsync();
        await using var otherTx = await other.BeginTransactionAsync();
        await Assert.ThrowsAsync<LockNotAvailableException>(() =>
            otherTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait()));
        await tx.CommitAsync();
        Assert.Equal("0", await connection.ExecuteScalarAsync<string>("SHOW lock_timeout"));
    }

    [Fact]
    public async Task A_timed_lock_without_savepoint_that_times_out_aborts_the_transaction_and_the_rollback_undoes_the_timeout()
    {
        var table = await db.CreateHotRowTableAsync("sp");
        await using var holder = await db.DataSource.OpenConnectionAsync();
        await using var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate);

        await using var waiter = await db.DataSource.OpenConnectionAsync();
        await using var waiterTx = await waiter.BeginTransactionAsync();
        var error = await Assert.ThrowsAsync<LockNotAvailableException>(() => waiterTx.LockRowsAsync<int>(
            $"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromMilliseconds(200)).WithoutSavepoint()));
        Assert.StartsWith("55P03 lock_not_available: FOR UPDATE (lock_timeout 200ms, without savepoint)", error.Message, StringComparison.Ordinal);
        var next = await Assert.ThrowsAsync<PostgresException>(() => waiter.ExecuteScalarAsync<string>("SHOW lock_timeout", transaction: waiterTx));
        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, next.SqlState);

        await waiterTx.RollbackAsync();
        Assert.Equal("0", await waiter.ExecuteScalarAsync<string>("SHOW lock_timeout"));
    }

    [Fact]
    public async Task A_runner_that_rolls_back_on_a_refused_lock_retries_cleanly_after_a_lock_without_savepoint()
    {
        var table = await db.CreateHotRowTableAsync("sp");
        await db.ExecuteAsync($"INSERT INTO {table} VALUES (2, 0)");
        await using var holder = await db.DataSource.OpenConnectionAsync();
        var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 2", null, RowLockClause.ForUpdate);

        var options = new TransactionRunnerOptions();
        options.Retry.RetryOnLockNotAvailable = true;
        options.Retry.Delay = TimeSpan.FromMilliseconds(1);
        var attempts = 0;
        await new TransactionRunner(db.DataSource, options).RunAsync(async (tx, ct) =>
        {
            if (++attempts == 2)
            {
                await holderTx.RollbackAsync(ct); // the other transaction ends before the second attempt locks
            }

            foreach (var id in new[] { 1, 2 })
            {
                await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = @id", new { id }, RowLockClause.ForUpdate.NoWait().WithoutSavepoint(), ct);
                await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = v + 1 WHERE id = @id", new { id }, tx);
            }
        });
        await holderTx.DisposeAsync();

        // The first attempt's update of row 1 was rolled back with its aborted transaction: each row counted once.
        Assert.Equal(2, attempts);
        Assert.Equal(2, await db.ScalarAsync<long>($"SELECT sum(v) FROM {table}"));
    }

    [Fact]
    public async Task Timed_advisory_locks_run_in_savepoints_that_spend_no_transaction_id()
    {
        // Only a subtransaction that gets an xid counts towards the 64 cached per backend; an advisory lock assigns none.
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        for (var i = 0; i < 100; i++)
        {
            await tx.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromInt64(9_170_000 + i), TimeSpan.FromSeconds(5));
        }

        Assert.Equal(100, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", transaction: tx));
        Assert.Null(await connection.ExecuteScalarAsync<string>("SELECT pg_current_xact_id_if_assigned()::text", transaction: tx));
        await tx.RollbackAsync();
    }

    [Fact]
    public void WithoutSavepoint_shows_in_ToString_not_in_the_SQL_and_makes_a_different_clause()
    {
        var clause = RowLockClause.ForUpdate.Of("orders").NoWait().WithoutSavepoint();
        Assert.Equal("FOR UPDATE OF \"orders\" NOWAIT", clause.ToSql());
        Assert.Equal("FOR UPDATE OF \"orders\" NOWAIT (without savepoint)", clause.ToString());
        Assert.Equal("FOR UPDATE (lock_timeout 250ms, without savepoint)", RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromMilliseconds(250)).WithoutSavepoint().ToString());
        Assert.False(clause.UsesSavepoint);
        Assert.True(RowLockClause.ForUpdate.NoWait().UsesSavepoint);
        Assert.False(RowLockClause.ForUpdate.UsesSavepoint);
        Assert.False(RowLockClause.ForUpdate.SkipLocked().UsesSavepoint);

        Assert.NotEqual(RowLockClause.ForUpdate.NoWait(), RowLockClause.ForUpdate.NoWait().WithoutSavepoint());
        Assert.Equal(RowLockClause.ForUpdate.NoWait().WithoutSavepoint(), RowLockClause.ForUpdate.NoWait().WithoutSavepoint());
        Assert.Equal(RowLockClause.ForUpdate.NoWait().WithoutSavepoint().GetHashCode(), RowLockClause.ForUpdate.NoWait().WithoutSavepoint().GetHashCode());

        // Of keeps it; a new wait policy (the last one wins) brings the savepoint back.
        Assert.False(RowLockClause.ForUpdate.NoWait().WithoutSavepoint().Of("a").UsesSavepoint);
        Assert.True(clause.NoWait().UsesSavepoint);
        Assert.True(clause.WithTimeout(TimeSpan.FromSeconds(1)).UsesSavepoint);
    }

    [Fact]
    public void WithoutSavepoint_on_a_clause_that_has_no_savepoint_is_refused()
    {
        var waiting = Assert.Throws<InvalidOperationException>(() => RowLockClause.ForUpdate.WithoutSavepoint());
        Assert.Contains("Call NoWait() or WithTimeout(...) before WithoutSavepoint()", waiting.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => RowLockClause.ForShare.SkipLocked().WithoutSavepoint());
    }
}
