using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Row-lock helpers on direct connections only: what a pooler cannot carry (startup options) and what is refused before
/// anything is sent. The race scenarios are the row-lock contract (RowLockContract), run on every endpoint.
/// </summary>
public sealed class RowLockTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Theory]
    [InlineData(RowLockWaitPolicy.Wait)]
    [InlineData(RowLockWaitPolicy.NoWait)]
    [InlineData(RowLockWaitPolicy.Timeout)]
    public async Task Locked_rows_map_to_every_type_dapper_maps_strings_nullables_and_records_included(RowLockWaitPolicy policy)
    {
        var table = TestTables.Unique("map");
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, body text, n bigint); INSERT INTO {table} VALUES (1, 'one', NULL), (2, NULL, 7);");
        var clause = policy switch
        {
            RowLockWaitPolicy.NoWait => RowLockClause.ForUpdate.NoWait(),
            RowLockWaitPolicy.Timeout => RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromSeconds(5)),
            _ => RowLockClause.ForUpdate,
        };
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();

        Assert.Equal(["one", null], await tx.LockRowsAsync<string?>($"SELECT body FROM {table} ORDER BY id", null, clause));
        Assert.Equal([null, 7L], await tx.LockRowsAsync<long?>($"SELECT n FROM {table} ORDER BY id", null, clause));
        Assert.Equal([1, 2], await tx.LockRowsAsync<int>($"SELECT id FROM {table} ORDER BY id", null, clause));
        Assert.Equal([new MappedRow(1, "one"), new MappedRow(2, null)], await tx.LockRowsAsync<MappedRow>($"SELECT id, body FROM {table} ORDER BY id", null, clause));
    }

    public enum RowLockWaitPolicy { Wait, NoWait, Timeout }

    public sealed record MappedRow(int Id, string? Body);

    [Fact]
    public async Task A_row_lock_on_a_read_only_connection_says_to_target_the_primary()
    {
        var table = await db.CreateHotRowTableAsync("hot");
        await using var readOnly = db.CreateDataSource(b => b.Options = "-c default_transaction_read_only=on");
        await using var connection = await readOnly.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => tx.LockRowsAsync<int>($"SELECT v FROM {table}", null, RowLockClause.ForUpdate));
        Assert.StartsWith("Row locks need a writable primary", error.Message, StringComparison.Ordinal);
        Assert.Contains("Target Session Attributes=primary", error.Message, StringComparison.Ordinal);
        Assert.Equal(PostgresErrorCodes.ReadOnlySqlTransaction, Assert.IsType<PostgresException>(error.InnerException).SqlState);
    }

    [Fact]
    public async Task Helpers_refuse_a_completed_transaction_or_closed_connection()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        var tx = await connection.BeginTransactionAsync();
        await tx.CommitAsync();
        var completed = await Assert.ThrowsAsync<InvalidOperationException>(() => tx.LockRowsAsync<int>("SELECT id FROM t", null, RowLockClause.ForUpdate));
        Assert.StartsWith("The transaction is already committed or rolled back.", completed.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidOperationException>(() => tx.ClaimRowsAsync<int>("SELECT id FROM t", null, 5));
        await Assert.ThrowsAsync<InvalidOperationException>(() => tx.LockRowsByKeyAsync<int, int>("t", "id", [1], RowLockClause.ForUpdate));

        var open = await connection.BeginTransactionAsync();
        await connection.CloseAsync();
        await Assert.ThrowsAsync<InvalidOperationException>(() => open.LockRowsAsync<int>("SELECT id FROM t", null, RowLockClause.ForUpdate));
        await Assert.ThrowsAsync<ArgumentNullException>(() => ((NpgsqlTransaction)null!).LockRowsAsync<int>("SELECT id FROM t", null, RowLockClause.ForUpdate));
    }

    [Fact]
    public async Task Helpers_reject_bad_arguments_before_sending_anything()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await Assert.ThrowsAsync<ArgumentException>(() => tx.LockRowsAsync<int>("SELECT 1 FOR UPDATE", null, RowLockClause.ForUpdate));
        await Assert.ThrowsAsync<ArgumentException>(() => tx.LockRowsAsync<int>("SELECT 1;", null, RowLockClause.ForUpdate));
        await Assert.ThrowsAsync<ArgumentException>(() => tx.LockRowsAsync<int>("SELECT 1; SELECT 2", null, RowLockClause.ForUpdate));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => tx.ClaimRowsAsync<int>("SELECT 1", null, 0));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => tx.ClaimRowsAsync<int>("SELECT 1", null, -3));
        await Assert.ThrowsAsync<ArgumentException>(() => tx.LockRowsByKeyAsync<int, int>("", "id", [1], RowLockClause.ForUpdate));
        await Assert.ThrowsAsync<ArgumentException>(() => tx.LockRowsByKeyAsync<int, int>("t", " ", [1], RowLockClause.ForUpdate));
        await Assert.ThrowsAsync<ArgumentException>(() => tx.LockRowsByKeyAsync<int, int>("t", "id", [], RowLockClause.ForUpdate));

        // Nothing above reached the server, so the transaction is not aborted.
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT 1", transaction: tx));
    }
}
