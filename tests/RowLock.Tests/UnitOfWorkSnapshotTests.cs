using System.Data;
using Dapper;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// The runner sends nothing of its own before the work: BEGIN and its marker travel with the work's first statement, so
/// a REPEATABLE READ or SERIALIZABLE snapshot is taken where hand-written code takes it, and what was committed before
/// that statement is seen without a 40001 and a retry.
/// </summary>
public sealed class UnitOfWorkSnapshotTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private TransactionRunner Runner(IsolationLevel isolationLevel) =>
        new(db.DataSource, new TransactionRunnerOptions { IsolationLevel = isolationLevel, TimeProvider = new InstantTimeProvider() });

    [Theory]
    [InlineData(IsolationLevel.RepeatableRead)]
    [InlineData(IsolationLevel.Serializable)]
    public async Task A_row_committed_while_the_work_waits_before_its_first_statement_is_seen_and_locked_on_the_first_attempt(IsolationLevel isolationLevel)
    {
        var table = await db.CreateHotRowTableAsync("snapshot");
        var attempts = 0;

        var seen = await Runner(isolationLevel).RunAsync(async (tx, ct) =>
        {
            if (++attempts == 1)
            {
                // Another session commits after the runner has begun the transaction but before the work's first statement.
                await db.ExecuteAsync($"UPDATE {table} SET v = 41 WHERE id = 1");
            }

            var v = await tx.Connection!.ExecuteScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1 FOR UPDATE", transaction: tx);
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx);
            return v;
        });

        Assert.Equal(1, attempts); // no 40001, no retry: the snapshot was taken by the work's first statement
        Assert.Equal(41, seen);
        Assert.Equal(42, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task The_runner_sends_nothing_before_the_works_first_statement()
    {
        string? stateBeforeFirstStatement = null;
        string? stateAfterFirstStatement = null;

        await Runner(IsolationLevel.RepeatableRead).RunAsync(async (tx, ct) =>
        {
            var pid = tx.Connection!.ProcessID;
            const string state = "SELECT state FROM pg_stat_activity WHERE pid = @pid";
            stateBeforeFirstStatement = await db.ScalarAsync<string>(state, new { pid });
            await tx.Connection!.ExecuteAsync("SELECT 1", transaction: tx);
            stateAfterFirstStatement = await db.ScalarAsync<string>(state, new { pid });
        });

        Assert.Equal("idle", stateBeforeFirstStatement); // not "idle in transaction": BEGIN has not been sent yet
        Assert.Equal("idle in transaction", stateAfterFirstStatement);
    }

    [Fact]
    public async Task Work_that_sends_COMMIT_AND_CHAIN_is_refused_and_its_chained_transaction_rolled_back()
    {
        var table = TestTables.Unique("chain");
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY)");
        var runs = 0;

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner(IsolationLevel.ReadCommitted).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
            await tx.Connection!.ExecuteAsync("COMMIT AND CHAIN", transaction: tx);
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (2)", transaction: tx);
        }));

        Assert.Equal(1, runs);
        Assert.StartsWith("The work ended the runner's transaction itself", error.Message, StringComparison.Ordinal);
        Assert.Equal([1], await (await db.DataSource.OpenConnectionAsync()).QueryAsync<int>($"SELECT id FROM {table}")); // the first commit cannot be undone
    }

    [Fact]
    public async Task Work_that_sends_a_raw_COMMIT_and_BEGIN_as_its_first_statement_is_refused()
    {
        var table = TestTables.Unique("first_commit");
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY)");

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner(IsolationLevel.ReadCommitted).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync("COMMIT; BEGIN", transaction: tx);
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (2)", transaction: tx);
        }));

        Assert.StartsWith("The work ended the runner's transaction itself", error.Message, StringComparison.Ordinal);
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }
}
