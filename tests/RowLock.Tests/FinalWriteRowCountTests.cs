using Dapper;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// A deferred write that states the rows it must affect (<c>expectedRows</c>) is checked by the server before COMMIT: a
/// mismatch skips COMMIT and surfaces as <see cref="UnexpectedRowCountException"/>, so an optimistic version check can use
/// the one-round-trip commit without losing updates.
/// </summary>
public sealed class FinalWriteRowCountTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private const string VersionedUpdate = "UPDATE {0} SET v = @v, version = version + 1 WHERE id = 1 AND version = @version";

    private async Task<string> CreateVersionedRowAsync()
    {
        var table = TestTables.Unique("versioned");
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL, version int NOT NULL); INSERT INTO {table} VALUES (1, 0, 0);");
        return table;
    }

    [Fact]
    public async Task Concurrent_optimistic_increments_with_expected_rows_and_retry_lose_no_update()
    {
        var table = await CreateVersionedRowAsync();
        var options = new TransactionRunnerOptions { Retry = { RetryOnUnexpectedRowCount = true, MaxRetryAttempts = 1000, Delay = TimeSpan.FromMilliseconds(1), MaxDelay = TimeSpan.FromMilliseconds(20) } };
        var runner = new TransactionRunner(db.DataSource, options);
        const int workers = 8;
        const int increments = 10;
        var attempts = 0;

        await Workers.RaceAsync(workers, async _ =>
        {
            for (var i = 0; i < increments; i++)
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    Interlocked.Increment(ref attempts);

                    // No lock: read the row and its version, then write only if nobody changed it in between.
                    var row = await tx.Connection!.QuerySingleAsync<(int V, int Version)>($"SELECT v, version FROM {table} WHERE id = 1", transaction: tx);
                    tx.DeferUntilCommit(string.Format(null, VersionedUpdate, table), new { v = row.V + 1, version = row.Version }, expectedRows: 1);
                });
            }
        }).WaitAsync(TimeSpan.FromSeconds(120));

        Assert.Equal(workers * increments, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
        Assert.Equal(workers * increments, await db.ScalarAsync<int>($"SELECT version FROM {table} WHERE id = 1"));
        Assert.True(attempts >= workers * increments);
    }

    [Fact]
    public async Task A_version_check_that_another_writer_won_is_a_typed_mismatch_and_nothing_of_the_unit_of_work_is_committed()
    {
        var table = await CreateVersionedRowAsync();
        var log = TestTables.Unique("versioned_log");
        await db.ExecuteAsync($"CREATE TABLE {log} (what text)");
        var runs = 0;

        var e = await Assert.ThrowsAsync<UnexpectedRowCountException>(() => new TransactionRunner(db.DataSource).RunAsync(async (tx, ct) =>
        {
            runs++;
            var row = await tx.Connection!.QuerySingleAsync<(int V, int Version)>($"SELECT v, version FROM {table} WHERE id = 1", transaction: tx);
            await tx.Connection!.ExecuteAsync($"INSERT INTO {log} VALUES ('audit')", transaction: tx);
            await db.ExecuteAsync($"UPDATE {table} SET v = 10, version = version + 1 WHERE id = 1"); // another writer wins
            tx.DeferUntilCommit(string.Format(null, VersionedUpdate, table), new { v = row.V + 1, version = row.Version }, expectedRows: 1);
        }));

        Assert.Equal(1, runs); // not retried unless RetryOnUnexpectedRowCount is set
        Assert.Equal(1, e.ExpectedRows);
        Assert.Equal(0, e.ActualRows);
        Assert.Contains("version = @version", e.Sql, StringComparison.Ordinal);
        Assert.True(e.IsTransient);
        Assert.Equal(10, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM {log}")); // COMMIT never ran
    }

    [Fact]
    public async Task Expected_rows_count_each_execution_accept_RETURNING_and_a_match_commits()
    {
        var table = await db.CreateHotRowTableAsync("counted");
        await db.ExecuteAsync($"INSERT INTO {table} VALUES (2, 0), (3, 0)");

        await new TransactionRunner(db.DataSource).RunAsync((tx, ct) =>
        {
            tx.DeferUntilCommit($"UPDATE {table} SET v = v + 1 WHERE id = @id", new[] { new { id = 1 }, new { id = 2 } }, expectedRows: 1);
            tx.DeferUntilCommit($"UPDATE {table} SET v = v + 10 WHERE id >= 2 RETURNING id", expectedRows: 2);
            tx.DeferUntilCommit($"DELETE FROM {table} WHERE id = 99", expectedRows: 0);
            return Task.CompletedTask;
        });

        Assert.Equal(1 + 11 + 10, await db.ScalarAsync<int>($"SELECT sum(v) FROM {table}"));

        var e = await Assert.ThrowsAsync<UnexpectedRowCountException>(() => new TransactionRunner(db.DataSource).RunAsync((tx, ct) =>
        {
            tx.DeferUntilCommit($"UPDATE {table} SET v = 0 WHERE id = @id", new[] { new { id = 1 }, new { id = 42 } }, expectedRows: 1);
            return Task.CompletedTask;
        }));
        Assert.Equal(0, e.ActualRows); // the second execution matched nothing
        Assert.Equal(1, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1")); // the first was rolled back with it
    }

    [Fact]
    public async Task Expected_rows_on_a_statement_that_is_not_an_insert_update_or_delete_or_negative_is_refused_at_the_call()
    {
        var table = await db.CreateHotRowTableAsync("counted_refused");

        await new TransactionRunner(db.DataSource).RunAsync((tx, ct) =>
        {
            Assert.Throws<ArgumentException>("sql", () => tx.DeferUntilCommit($"SELECT v FROM {table}", expectedRows: 1));
            Assert.Throws<ArgumentException>("sql", () => tx.DeferUntilCommit($"WITH x AS (SELECT 1) UPDATE {table} SET v = 1", expectedRows: 1));
            Assert.Throws<ArgumentOutOfRangeException>("expectedRows", () => tx.DeferUntilCommit($"UPDATE {table} SET v = 1", expectedRows: -1));
            return Task.CompletedTask;
        });

        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }
}
