using Dapper;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// SQL whose text hides a second statement from the validator but not from Npgsql, which splits the command text at
/// ';' with its own scanner before PostgreSQL sees it. Each case is first sent as-is (with the clause appended) to prove
/// it really deletes a row, then through LockRowsAsync, which must refuse it before sending anything.
/// </summary>
public sealed class NpgsqlSplitTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private const string Hidden = " ; DELETE FROM split_items WHERE id = 2; SELECT id FROM split_items WHERE id = 1";

    private static readonly Dictionary<string, string> Cases = new()
    {
        // Npgsql reads "@e" as a named parameter, so the E'' string after it is a plain string for Npgsql.
        ["E string right after an @ operator"] = "SELECT id FROM split_items WHERE ARRAY['a'] <@e'{a,\\'}' -- '" + Hidden,

        // Npgsql ends an E'' string at a doubled quote and reads the rest as a plain string (no backslash escapes).
        ["E string with a doubled quote, then a backslash"] = "SELECT E'a''b\\' ' -- x'" + Hidden,

        // PostgreSQL (and Npgsql) continue an E'' string over a newline with backslash escapes: 'a'\n'b' is one string.
        ["E string continued on the next line"] = "SELECT E'a'\n'\\''" + Hidden + " --'",
    };

    public static TheoryData<string> Names => new(Cases.Keys);

    private async Task CreateTableAsync() => await db.ExecuteAsync("""
        CREATE TABLE IF NOT EXISTS split_items (id int PRIMARY KEY);
        INSERT INTO split_items VALUES (1), (2) ON CONFLICT DO NOTHING;
        """);

    [Theory]
    [MemberData(nameof(Names))]
    public async Task Sent_as_is_the_hidden_statement_deletes_a_row(string name)
    {
        await CreateTableAsync();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.QueryAsync(Cases[name] + "\nFOR UPDATE", transaction: tx);
        Assert.Equal(0, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM split_items WHERE id = 2", transaction: tx));
        await tx.RollbackAsync();
    }

    [Theory]
    [MemberData(nameof(Names))]
    public async Task The_lock_helper_refuses_it_before_sending_anything(string name)
    {
        await CreateTableAsync();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Record.ExceptionAsync(() => tx.LockRowsAsync<int>(Cases[name], null, RowLockClause.ForUpdate));
        var left = await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM split_items WHERE id = 2", transaction: tx);
        await tx.RollbackAsync();
        Assert.Equal(1, left);
        Assert.IsType<ArgumentException>(error);
    }

    [Fact]
    public async Task With_standard_conforming_strings_off_a_backslash_quote_does_not_hide_a_statement()
    {
        await CreateTableAsync();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await connection.ExecuteAsync("SET standard_conforming_strings = off");
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Record.ExceptionAsync(() => tx.LockRowsAsync<int>("SELECT 'x\\''" + Hidden + " --'", null, RowLockClause.ForUpdate));
        var left = await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM split_items WHERE id = 2", transaction: tx);
        await tx.RollbackAsync();
        await connection.ExecuteAsync("RESET standard_conforming_strings");
        Assert.Equal(1, left);
        Assert.IsType<ArgumentException>(error);
    }
}
