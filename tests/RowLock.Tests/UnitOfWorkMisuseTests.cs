using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Work that swallows an error on the runner's transaction, or ends that transaction itself, is never reported as a
/// success, and an error from another connection is never attributed to the runner.
/// </summary>
public sealed class UnitOfWorkMisuseTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private const string RaiseSerializationFailure = "DO $$ BEGIN RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure'; END $$";

    private TransactionRunner Runner() => new(db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() });

    private async Task<string> CreateUniqueTableAsync()
    {
        var table = "uniq_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY); INSERT INTO {table} VALUES (1);");
        return table;
    }

    /// <summary>Another session's transaction fails with 40001 and the work swallows that too.</summary>
    private async Task SwallowSerializationFailureOnAnotherConnectionAsync()
    {
        await using var other = await db.DataSource.OpenConnectionAsync();
        await using var otherTx = await other.BeginTransactionAsync();
        try
        {
            await other.ExecuteAsync(RaiseSerializationFailure, transaction: otherTx);
        }
        catch (PostgresException)
        {
        }
    }

    [Fact]
    public async Task An_error_swallowed_on_another_connection_is_never_reported_or_retried_when_the_work_returns()
    {
        var table = await CreateUniqueTableAsync();
        var runs = 0;

        var error = await Assert.ThrowsAsync<RowLockException>(() => Runner().RunAsync(async (tx, ct) =>
        {
            runs++;
            if (runs == 1)
            {
                try
                {
                    await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx); // 23505 on the runner's transaction
                }
                catch (PostgresException)
                {
                }

                await SwallowSerializationFailureOnAnotherConnectionAsync(); // 40001, not the runner's
            }
        }));

        Assert.Equal(1, runs);
        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState);
        Assert.StartsWith("The work caught a database error on the runner's transaction and continued;", error.Message, StringComparison.Ordinal);
        for (var inner = error.InnerException; inner is not null; inner = inner.InnerException)
        {
            Assert.NotEqual(PostgresErrorCodes.SerializationFailure, (inner as PostgresException)?.SqlState); // never the other connection's error
        }

        Assert.Equal(1L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }

    [Fact]
    public async Task An_error_swallowed_on_another_connection_is_never_reported_or_retried_when_the_work_throws_the_25P02()
    {
        var table = await CreateUniqueTableAsync();
        var runs = 0;

        var error = await Assert.ThrowsAsync<RowLockException>(() => Runner().RunAsync(async (tx, ct) =>
        {
            runs++;
            if (runs == 1)
            {
                try
                {
                    await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
                }
                catch (PostgresException)
                {
                }

                await SwallowSerializationFailureOnAnotherConnectionAsync();
            }

            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (2)", transaction: tx); // 25P02 on run 1
        }));

        Assert.Equal(1, runs);
        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState);
        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, Assert.IsType<PostgresException>(error.InnerException).SqlState);
        Assert.Equal(1L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }

    [Fact]
    public async Task A_25P02_from_another_connection_thrown_by_the_work_reaches_the_caller_unchanged()
    {
        var runs = 0;
        var error = await Assert.ThrowsAsync<PostgresException>(() => Runner().RunAsync(async (tx, ct) =>
        {
            runs++;
            await using var other = await db.DataSource.OpenConnectionAsync(ct);
            await using var otherTx = await other.BeginTransactionAsync(ct);
            try
            {
                await other.ExecuteAsync("SELECT 1/0", transaction: otherTx);
            }
            catch (PostgresException)
            {
            }

            await other.ExecuteAsync("SELECT 1", transaction: otherTx); // 25P02, but the runner's transaction is fine
        }));

        Assert.Equal(1, runs);
        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState);
    }

    [Fact]
    public async Task Work_that_sends_a_raw_COMMIT_and_BEGIN_is_refused_and_its_second_transaction_rolled_back()
    {
        var table = "raw_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY)");
        var runs = 0;

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner().RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
            await tx.Connection!.ExecuteAsync("COMMIT; BEGIN", transaction: tx);
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (2)", transaction: tx);
        }));

        Assert.Equal(1, runs);
        Assert.StartsWith("The work ended the runner's transaction itself", error.Message, StringComparison.Ordinal);
        Assert.Equal([1], await (await db.DataSource.OpenConnectionAsync()).QueryAsync<int>($"SELECT id FROM {table}")); // the first commit cannot be undone
    }

    [Fact]
    public async Task Work_that_sends_a_raw_ROLLBACK_and_BEGIN_is_refused()
    {
        var table = "raw_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY)");

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner().RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
            await tx.Connection!.ExecuteAsync("ROLLBACK; BEGIN", transaction: tx);
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (2)", transaction: tx);
        }));

        Assert.StartsWith("The work ended the runner's transaction itself", error.Message, StringComparison.Ordinal);
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }
}
