using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Proofs that the tests talk to a real PostgreSQL server, with real contention and real isolation between classes.</summary>
public sealed class FixtureTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task The_server_answers_select_version()
    {
        var version = await db.ScalarAsync<string>("SELECT version()");
        Assert.StartsWith("PostgreSQL", version, StringComparison.Ordinal);
    }

    [Fact]
    public void Test_table_names_are_unique_and_need_no_quoting()
    {
        var names = Enumerable.Range(0, 100).Select(_ => TestTables.Unique("stock")).ToList();
        Assert.Equal(100, names.Distinct().Count());
        Assert.All(names, n => Assert.Matches("^stock_[0-9a-f]{8}$", n));
        Assert.Throws<ArgumentException>(() => TestTables.Unique("Stock"));
        Assert.Throws<ArgumentException>(() => TestTables.Unique("stock\"; DROP TABLE x; --"));
        Assert.Throws<ArgumentException>(() => TestTables.Unique(""));
    }

    [Fact]
    public async Task Two_connections_really_contend_for_a_row()
    {
        var contended = TestTables.Unique("contended");
        await db.ExecuteAsync($"CREATE TABLE {contended} (id int PRIMARY KEY, v int); INSERT INTO {contended} VALUES (1, 0);");

        await using var holder = await db.DataSource.OpenConnectionAsync();
        await using var holderTx = await holder.BeginTransactionAsync();
        await holder.ExecuteAsync($"SELECT * FROM {contended} WHERE id = 1 FOR UPDATE", transaction: holderTx);

        await using var other = await db.DataSource.OpenConnectionAsync();
        await using var otherTx = await other.BeginTransactionAsync();
        var error = await Assert.ThrowsAsync<PostgresException>(() =>
            other.ExecuteAsync($"SELECT * FROM {contended} WHERE id = 1 FOR UPDATE NOWAIT", transaction: otherTx));
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, error.SqlState);
    }

    [Fact]
    public async Task Each_test_class_sees_only_its_own_database()
    {
        await db.ExecuteAsync("CREATE TABLE only_here (id int)");
        await using var other = new DatabaseFixture();
        await other.InitializeAsync();
        try
        {
            Assert.NotEqual(db.ConnectionString, other.ConnectionString);
            var seen = await other.ScalarAsync<bool>("SELECT to_regclass('only_here') IS NOT NULL");
            Assert.False(seen);
            Assert.True(await db.ScalarAsync<bool>("SELECT to_regclass('only_here') IS NOT NULL"));
        }
        finally
        {
            await other.DisposeAsync();
        }
    }
}
