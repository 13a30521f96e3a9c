using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// A built-in set-returning function in FROM (<c>JOIN generate_series(...)</c>) reads no table, so the SQL check lets it
/// sit beside the locked table. An unqualified call can reach a function of the same name in another schema on the search
/// path instead (a better match for its arguments), which may read a table whose rows the clause then silently does not
/// lock. The server check refuses the call when such a function is visible; <c>pg_catalog.</c> always reaches the built-in.
/// Each test runs on a data source of its own whose search path holds a schema of its own, so no other test sees the function.
/// </summary>
public sealed class BuiltinFunctionShadowTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private sealed record Setup(string Schema, string Table, NpgsqlDataSource Shadowed);

    private async Task<Setup> SetUpAsync()
    {
        var schema = "shadow_" + Guid.NewGuid().ToString("N")[..8];
        var table = "locked_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"""
            CREATE SCHEMA {schema};
            CREATE TABLE {schema}.secrets (id int PRIMARY KEY, v int NOT NULL);
            INSERT INTO {schema}.secrets VALUES (1, 10), (2, 20);
            CREATE FUNCTION {schema}.generate_series(text) RETURNS SETOF int LANGUAGE sql STABLE AS 'SELECT id FROM {schema}.secrets';
            CREATE TABLE public.{table} (id int PRIMARY KEY, v int NOT NULL);
            INSERT INTO public.{table} VALUES (1, 0), (2, 0);
            """);
        var shadowed = db.CreateDataSource(b => b.SearchPath = $"{schema},public");
        return new Setup(schema, table, shadowed);
    }

    [Fact]
    public async Task An_unqualified_call_that_may_reach_a_function_outside_pg_catalog_is_refused_and_the_transaction_goes_on()
    {
        var (schema, table, shadowed) = await SetUpAsync();
        await using var _ = shadowed;
        await using var connection = await shadowed.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();

        var error = await Assert.ThrowsAsync<ArgumentException>(() => tx.LockRowsAsync<int>(
            $"SELECT t.v FROM {table} t JOIN generate_series('x') g(id) ON g.id = t.id WHERE t.id = 1", null, RowLockClause.ForUpdate));

        Assert.Equal("selectSql", error.ParamName);
        Assert.Contains($"{schema}.generate_series", error.Message, StringComparison.Ordinal);
        Assert.Contains("pg_catalog.generate_series(...)", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT 1", transaction: tx)); // still usable
    }

    [Fact]
    public async Task The_refused_shape_sent_by_hand_leaves_the_rows_the_function_reads_unlocked()
    {
        // Why the refusal matters: the clause locks the table's row, and not the row the function returns from its own table.
        var (schema, table, shadowed) = await SetUpAsync();
        await using var _ = shadowed;
        await using var holder = await shadowed.OpenConnectionAsync();
        await using var tx = await holder.BeginTransactionAsync();
        var read = await holder.QueryAsync<int>(
            $"SELECT g.id FROM {table} t JOIN generate_series('x') g(id) ON g.id = t.id WHERE t.id = 1 FOR UPDATE", transaction: tx);
        Assert.Equal([1], read);

        await using var other = await db.DataSource.OpenConnectionAsync();
        await using var otherTx = await other.BeginTransactionAsync();
        Assert.Equal(10, await other.ExecuteScalarAsync<int>($"SELECT v FROM {schema}.secrets WHERE id = 1 FOR UPDATE NOWAIT", transaction: otherTx));
        var locked = await Assert.ThrowsAsync<PostgresException>(() => other.ExecuteScalarAsync<int>($"SELECT v FROM public.{table} WHERE id = 1 FOR UPDATE NOWAIT", transaction: otherTx));
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, locked.SqlState);
    }

    [Fact]
    public async Task A_pg_catalog_qualified_call_is_accepted_on_the_same_search_path_and_locks_the_table_row()
    {
        var (_, table, shadowed) = await SetUpAsync();
        await using var __ = shadowed;
        await using var connection = await shadowed.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();

        var rows = await tx.LockRowsAsync<int>(
            $"SELECT t.id FROM {table} t JOIN pg_catalog.generate_series(1, 1) g(id) ON g.id = t.id", null, RowLockClause.ForUpdate);

        Assert.Equal([1], rows);
        await using var other = await db.DataSource.OpenConnectionAsync();
        await using var otherTx = await other.BeginTransactionAsync();
        var locked = await Assert.ThrowsAsync<PostgresException>(() => other.ExecuteScalarAsync<int>($"SELECT v FROM public.{table} WHERE id = 1 FOR UPDATE NOWAIT", transaction: otherTx));
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, locked.SqlState);
    }

    [Fact]
    public async Task Where_no_such_function_is_visible_the_unqualified_built_in_is_accepted()
    {
        var (_, table, shadowed) = await SetUpAsync();
        await using var _ = shadowed;
        await using var connection = await db.DataSource.OpenConnectionAsync(); // search path without the schema
        await using var tx = await connection.BeginTransactionAsync();

        var rows = await tx.LockRowsAsync<int>(
            $"SELECT t.id FROM {table} t JOIN generate_series(1, 2) g(id) ON g.id = t.id ORDER BY t.id", null, RowLockClause.ForUpdate);

        Assert.Equal([1, 2], rows);
    }

    [Fact]
    public async Task A_view_whose_definition_calls_the_shadowing_function_unqualified_is_refused()
    {
        var (schema, table, shadowed) = await SetUpAsync();
        await using var _ = shadowed;
        var view = "v_" + Guid.NewGuid().ToString("N")[..8];
        await using (var setup = await shadowed.OpenConnectionAsync())
        {
            await setup.ExecuteAsync($"CREATE VIEW {schema}.{view} AS SELECT t.id, t.v FROM public.{table} t JOIN generate_series('x') g(id) ON g.id = t.id");
        }

        await using var connection = await shadowed.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Assert.ThrowsAsync<ArgumentException>(() => tx.LockRowsAsync<int>($"SELECT v FROM {view} WHERE id = 1", null, RowLockClause.ForUpdate));

        Assert.Contains($"{schema}.generate_series", error.Message, StringComparison.Ordinal);
    }
}
