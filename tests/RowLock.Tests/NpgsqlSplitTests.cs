using Dapper;
using Npgsql;
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

    /// <summary>
    /// SQL that PostgreSQL and RowLock's scanner read as one statement but Npgsql, parsing a command's text, splits into
    /// three: the scanner accepts it, so only the way the helpers send it (one NpgsqlBatchCommand, which Npgsql never splits)
    /// keeps the DELETE from running.
    /// </summary>
    private static readonly Dictionary<string, string> Unsplittable = new()
    {
        // Npgsql starts an E'' string at an e after any character that is not an ASCII letter: here the _ of the type name code_e.
        ["e' after the _ of a type name"] = "SELECT code_e'\\' -- '; DELETE FROM split_items WHERE id = 2; SELECT 1 AS x, id\nFROM split_items WHERE id = 1",

        // Npgsql starts a dollar quote at a $ after any character beyond U+00FF; PostgreSQL reads the $ as part of the name.
        ["$$ after a name character beyond U+00FF"] = "SELECT 1 AS \u0101$$, 2 -- $$; DELETE FROM split_items WHERE id = 2; SELECT 1 AS x, id\nFROM split_items WHERE id = 1",
    };

    public static TheoryData<string> UnsplittableNames => new(Unsplittable.Keys);

    /// <summary>Every helper entry point that takes caller SQL, each wait policy, with and without a named parameter.</summary>
    public static readonly Dictionary<string, Func<NpgsqlTransaction, string, object?, Task>> EntryPoints = new()
    {
        ["LockRowsAsync"] = (tx, sql, p) => tx.LockRowsAsync<dynamic>(sql, p, RowLockClause.ForUpdate),
        ["LockRowsAsync NoWait"] = (tx, sql, p) => tx.LockRowsAsync<dynamic>(sql, p, RowLockClause.ForUpdate.NoWait()),
        ["LockRowsAsync WithTimeout"] = (tx, sql, p) => tx.LockRowsAsync<dynamic>(sql, p, RowLockClause.ForShare.WithTimeout(TimeSpan.FromSeconds(30))),
        ["LockRowsAsync SkipLocked"] = (tx, sql, p) => tx.LockRowsAsync<dynamic>(sql, p, RowLockClause.ForNoKeyUpdate.SkipLocked()),
        ["LockRowsAsync NoWait WithoutSavepoint"] = (tx, sql, p) => tx.LockRowsAsync<dynamic>(sql, p, RowLockClause.ForUpdate.NoWait().WithoutSavepoint()),
        ["LockRowsAsync WithTimeout WithoutSavepoint"] = (tx, sql, p) => tx.LockRowsAsync<dynamic>(sql, p, RowLockClause.ForKeyShare.WithTimeout(TimeSpan.FromSeconds(30)).WithoutSavepoint()),
        ["ClaimRowsAsync"] = (tx, sql, p) => tx.ClaimRowsAsync<dynamic>(sql, p, 5),
    };

    public static TheoryData<string, string, bool> UnsplittableCalls()
    {
        var data = new TheoryData<string, string, bool>();
        foreach (var shape in Unsplittable.Keys)
        {
            foreach (var entry in EntryPoints.Keys)
            {
                data.Add(shape, entry, false);
                data.Add(shape, entry, true);
            }
        }

        return data;
    }

    private async Task CreateCodeTypeAsync()
    {
        await CreateTableAsync();
        await db.ExecuteAsync("DO $$ BEGIN CREATE DOMAIN code_e AS text; EXCEPTION WHEN duplicate_object THEN NULL; END $$");
    }

    [Theory]
    [MemberData(nameof(UnsplittableNames))]
    public async Task Sent_as_an_NpgsqlCommand_the_statement_Npgsql_splits_deletes_a_row(string name)
    {
        await CreateCodeTypeAsync();
        Assert.Empty(SqlTextRefusal(Unsplittable[name])); // RowLock's scanner reads one SELECT, as PostgreSQL does
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.QueryAsync(Unsplittable[name] + "\nFOR UPDATE", transaction: tx);
        Assert.Equal(0, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM split_items WHERE id = 2", transaction: tx));
        await tx.RollbackAsync();
    }

    [Theory]
    [MemberData(nameof(UnsplittableCalls))]
    public async Task Through_every_helper_the_hidden_delete_never_runs(string name, string entry, bool namedParameter)
    {
        await CreateCodeTypeAsync();
        var sql = namedParameter ? Unsplittable[name] + " AND id = @id" : Unsplittable[name];
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Record.ExceptionAsync(() => EntryPoints[entry](tx, sql, namedParameter ? new { id = 1 } : null));
        if (entry.Contains("WithoutSavepoint", StringComparison.Ordinal) && error is PostgresException)
        {
            await tx.RollbackAsync();
            Assert.Fail($"unexpected server error: {error}");
        }

        var left = await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM split_items WHERE id = 2", transaction: tx);
        await tx.RollbackAsync();
        Assert.Equal(1, left);

        // Without parameters Npgsql sends the batch command's text as it is and PostgreSQL reads one SELECT: the rows come back.
        // With a named parameter Npgsql parses the text, finds the ';' and refuses before sending anything.
        if (namedParameter)
        {
            Assert.Equal("selectSql", Assert.IsType<ArgumentException>(error).ParamName);
        }
        else
        {
            Assert.Null(error);
        }
    }

    [Fact]
    public async Task LockRowsByKeyAsync_quotes_a_table_name_that_hides_a_delete()
    {
        await CreateCodeTypeAsync();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Record.ExceptionAsync(() => tx.LockRowsByKeyAsync<dynamic, int>("split_items\"; DELETE FROM split_items WHERE id = 2; --", "id", [1], RowLockClause.ForUpdate.NoWait()));
        Assert.NotNull(error);
        var left = await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM split_items WHERE id = 2", transaction: tx);
        await tx.RollbackAsync();
        Assert.Equal(1, left);
    }

    private static string SqlTextRefusal(string sql)
    {
        try
        {
            RowLock.Internal.SqlText.ValidateSelect(sql, "selectSql", RowLockClause.ForUpdate, claim: false);
            return "";
        }
        catch (ArgumentException e)
        {
            return e.Message;
        }
    }
}
