using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Which SELECT shapes a lock helper accepts, proven on a real server: every refused shape is one that PostgreSQL
/// rejects with a locking clause (or one whose rows the clause would not lock, or that writes), and every accepted
/// tricky shape really locks its row (a second connection's NOWAIT gets 55P03).
/// </summary>
public sealed class LockingClauseShapeTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    /// <summary><paramref name="Clause"/> null means ClaimRowsAsync (which appends LIMIT n FOR UPDATE SKIP LOCKED).</summary>
    public sealed record Shape(string Sql, RowLockClause? Clause, string Construct, string? PostgresError);

    private static readonly RowLockClause ForUpdate = RowLockClause.ForUpdate;

    /// <summary>Refused shapes. PostgresError: what PostgreSQL says when the same SQL is sent with the clause; null when it runs (and does harm).</summary>
    private static readonly Dictionary<string, Shape> Refused = new()
    {
        ["UNION"] = new("SELECT id, v FROM items WHERE id = 1 UNION SELECT id, v FROM items WHERE id = 2", ForUpdate, "UNION", "FOR UPDATE is not allowed with UNION/INTERSECT/EXCEPT"),
        ["INTERSECT"] = new("SELECT id FROM items INTERSECT SELECT hid FROM o", ForUpdate, "INTERSECT", "FOR UPDATE is not allowed with UNION/INTERSECT/EXCEPT"),
        ["EXCEPT"] = new("SELECT id FROM items EXCEPT SELECT hid FROM o", ForUpdate.NoWait(), "EXCEPT", "FOR UPDATE is not allowed with UNION/INTERSECT/EXCEPT"),
        ["parenthesised UNION"] = new("(SELECT id FROM items) UNION (SELECT hid FROM o)", ForUpdate, "UNION", "FOR UPDATE is not allowed with UNION/INTERSECT/EXCEPT"),
        ["DISTINCT"] = new("SELECT DISTINCT v FROM items", ForUpdate, "DISTINCT", "FOR UPDATE is not allowed with DISTINCT clause"),
        ["DISTINCT ON"] = new("SELECT DISTINCT ON (v) id, v FROM items ORDER BY v, id", ForUpdate, "DISTINCT", "FOR UPDATE is not allowed with DISTINCT clause"),
        ["DISTINCT in a claim"] = new("SELECT DISTINCT v FROM items", null, "DISTINCT", "FOR UPDATE is not allowed with DISTINCT clause"),
        ["GROUP BY"] = new("SELECT v FROM items GROUP BY v", ForUpdate, "GROUP BY", "FOR UPDATE is not allowed with GROUP BY clause"),
        ["HAVING"] = new("SELECT 1 AS one FROM items HAVING count(*) > 0", ForUpdate, "HAVING", "FOR UPDATE is not allowed with HAVING clause"),
        ["aggregate"] = new("SELECT count(*) FROM items", ForUpdate, "count", "FOR UPDATE is not allowed with aggregate functions"),
        ["qualified aggregate"] = new("SELECT pg_catalog.sum(v) FROM items", ForUpdate.WithTimeout(TimeSpan.FromSeconds(5)), "sum", "FOR UPDATE is not allowed with aggregate functions"),
        ["ordered-set aggregate"] = new("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM items", ForUpdate, "percentile_cont", "FOR UPDATE is not allowed with aggregate functions"),
        ["window function"] = new("SELECT id, row_number() OVER (ORDER BY id) AS n FROM items", ForUpdate, "window function", "FOR UPDATE is not allowed with window functions"),
        ["window in ORDER BY"] = new("SELECT id FROM items ORDER BY count(*) OVER ()", ForUpdate, "count", "FOR UPDATE is not allowed with window functions"),
        ["set-returning function in the select list"] = new("SELECT generate_series(1, 2) AS n, v FROM items", ForUpdate, "generate_series", "FOR UPDATE is not allowed with set-returning functions in the target list"),
        ["LEFT JOIN without Of"] = new("SELECT i.v FROM items i LEFT JOIN o ON o.hid = i.id", ForUpdate, "LEFT JOIN", "FOR UPDATE cannot be applied to the nullable side of an outer join"),
        ["LEFT JOIN in a claim"] = new("SELECT i.id FROM items i LEFT OUTER JOIN o ON o.hid = i.id ORDER BY i.id", null, "LEFT JOIN", "FOR UPDATE cannot be applied to the nullable side of an outer join"),
        ["Of on the nullable side of LEFT JOIN"] = new("SELECT i.v FROM items i LEFT JOIN o ON o.hid = i.id", ForUpdate.Of("o"), "LEFT JOIN", "FOR UPDATE cannot be applied to the nullable side of an outer join"),
        ["Of on the nullable side of RIGHT JOIN"] = new("SELECT i.v FROM items i RIGHT JOIN o ON o.hid = i.id", ForUpdate.Of("i"), "RIGHT JOIN", "FOR UPDATE cannot be applied to the nullable side of an outer join"),
        ["Of on a side of FULL JOIN"] = new("SELECT i.v FROM items i FULL JOIN o ON o.hid = i.id", ForUpdate.Of("o"), "FULL JOIN", "FOR UPDATE cannot be applied to the nullable side of an outer join"),
        ["DISTINCT subquery in FROM"] = new("SELECT s.v FROM (SELECT DISTINCT v FROM items) s", ForUpdate, "DISTINCT", "FOR UPDATE is not allowed with DISTINCT clause"),
        ["GROUP BY subquery in a join"] = new("SELECT i.v FROM items i JOIN (SELECT hid, count(*) AS n FROM o GROUP BY hid) c ON c.hid = i.id", ForUpdate, "count", "FOR UPDATE is not allowed with GROUP BY clause"),
        ["GROUP BY subquery in a join, no aggregate"] = new("SELECT i.v FROM items i JOIN (SELECT hid FROM o GROUP BY hid) c ON c.hid = i.id", ForUpdate, "GROUP BY", "FOR UPDATE is not allowed with GROUP BY clause"),
        ["Of names a subquery with DISTINCT"] = new("SELECT i.v FROM items i JOIN (SELECT DISTINCT hid FROM o) c ON c.hid = i.id", ForUpdate.Of("c"), "DISTINCT", "FOR UPDATE is not allowed with DISTINCT clause"),
        ["FOR READ ONLY"] = new("SELECT v FROM items FOR READ ONLY", ForUpdate, "FOR READ ONLY", "syntax error at or near \"FOR\""),
        ["FETCH FIRST in a claim"] = new("SELECT id FROM items ORDER BY id FETCH FIRST 1 ROW ONLY", null, "FETCH", "syntax error at or near \"LIMIT\""),
        ["WITH TIES and SKIP LOCKED"] = new("SELECT id FROM items ORDER BY v FETCH FIRST 1 ROW WITH TIES", ForUpdate.SkipLocked(), "WITH TIES", "SKIP LOCKED and WITH TIES options cannot be used together"),
        ["Of names a WITH query"] = new("WITH r AS (SELECT id FROM items) SELECT id FROM r", ForUpdate.Of("r"), "WITH query", "FOR UPDATE cannot be applied to a WITH query"),
        ["VALUES"] = new("VALUES (1)", ForUpdate, "VALUES", "FOR UPDATE cannot be applied to VALUES"),
        ["data-modifying WITH in a subquery"] = new("SELECT v FROM items WHERE id IN (WITH u AS (UPDATE items SET v = 1 RETURNING id) SELECT id FROM u)", ForUpdate, "UPDATE", "WITH clause containing a data-modifying statement must be at the top level"),

        // PostgreSQL runs these: they lock nothing, or something else, or write.
        ["read through a WITH query"] = new("WITH r AS (SELECT id, v FROM items WHERE id = 1) SELECT id, v FROM r", ForUpdate, "WITH", null),
        ["subquery in FROM reading a WITH query"] = new("WITH r AS (SELECT id, v FROM items) SELECT s.v FROM (SELECT * FROM r) s", ForUpdate.Of("s"), "r", null),
        ["data-modifying WITH"] = new("WITH d AS (DELETE FROM items WHERE id = 2 RETURNING id) SELECT id FROM d", ForUpdate, "DELETE", null),
        ["data-modifying WITH with Of"] = new("WITH d AS (DELETE FROM items WHERE id = 2 RETURNING id) SELECT i.id FROM items i JOIN d ON d.id = i.id", ForUpdate.Of("i"), "DELETE", null),
        ["SELECT INTO"] = new("SELECT v INTO items_copy FROM items", ForUpdate, "INTO", null),
        ["a lone CR ends a -- comment"] = new("SELECT v FROM items WHERE id = 1 --c\r; SELECT hid FROM o", ForUpdate, "several statements", null),
        ["dollar-quote tag beyond U+00FF (Npgsql splits it)"] = new("SELECT $\u20AC$;$\u20AC$ AS s, id FROM items WHERE id = 1", ForUpdate, "dollar-quote tag", "unterminated dollar-quoted string"),
        ["Cyrillic dollar-quote tag (Npgsql splits it)"] = new("SELECT $\u0436$;$\u0436$ AS s, id FROM items WHERE id = 1", ForUpdate, "dollar-quote tag", "unterminated dollar-quoted string"),
        ["subquery in the select list (never locked, read before the lock wait)"] = new("SELECT id, (SELECT max(v) FROM items) AS m FROM items WHERE id = 1", ForUpdate, "subquery in its select list", null),
        ["function in FROM"] = new("SELECT g FROM generate_series(1, 2) g, pg_sleep(0) s", ForUpdate, "function pg_sleep()", null),
        ["no FROM"] = new("SELECT (SELECT v FROM items WHERE id = 1) AS v", ForUpdate, "subquery in its select list", null),
        ["a lone CR ends a -- comment in a claim"] = new("SELECT id FROM items --c\r; SELECT hid FROM o", null, "several statements", null),
    };

    public static TheoryData<string> RefusedShapes => new(Refused.Keys);

    private async Task CreateTablesAsync() => await db.ExecuteAsync("""
        CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, v int NOT NULL, "update" int NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now());
        CREATE TABLE IF NOT EXISTS o (id int PRIMARY KEY, hid int);
        INSERT INTO items (id, v) VALUES (1, 10), (2, 20) ON CONFLICT DO NOTHING;
        INSERT INTO o VALUES (1, 1) ON CONFLICT DO NOTHING;
        """);

    private static Task<IReadOnlyList<dynamic>> RunAsync(NpgsqlTransaction tx, Shape shape) => shape.Clause is { } clause
        ? tx.LockRowsAsync<dynamic>(shape.Sql, null, clause)
        : tx.ClaimRowsAsync<dynamic>(shape.Sql, null, 1);

    private async Task<string> StateAsync()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        var rows = await connection.QueryAsync<string>("SELECT id || '=' || v FROM items ORDER BY id");
        var tables = await connection.QueryAsync<string>("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
        return string.Join(",", rows) + "|" + string.Join(",", tables);
    }

    [Theory]
    [MemberData(nameof(RefusedShapes))]
    public async Task A_shape_the_clause_cannot_lock_is_refused_before_anything_is_sent(string name)
    {
        await CreateTablesAsync();
        var shape = Refused[name];
        var before = await StateAsync();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();

        var error = await Assert.ThrowsAsync<ArgumentException>(() => RunAsync(tx, shape));

        Assert.Equal("selectSql", error.ParamName);
        Assert.Contains(shape.Construct, error.Message, StringComparison.Ordinal);
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT 1", transaction: tx)); // nothing was sent: the transaction is fine
        await tx.RollbackAsync();
        Assert.Equal(before, await StateAsync());
    }

    [Theory]
    [MemberData(nameof(RefusedShapes))]
    public async Task Postgres_itself_rejects_the_refused_shape_when_the_clause_is_appended(string name)
    {
        var shape = Refused[name];
        if (shape.PostgresError is null)
        {
            return; // proven by the scenario tests below
        }

        await CreateTablesAsync();
        var clause = shape.Clause is { } c ? c.ToSql() : "LIMIT 1\nFOR UPDATE SKIP LOCKED";
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Assert.ThrowsAsync<PostgresException>(() => connection.QueryAsync(shape.Sql + "\n" + clause, transaction: tx));
        Assert.Contains(shape.PostgresError, error.MessageText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sent_as_is_a_data_modifying_with_deletes_and_select_into_creates_a_table()
    {
        await CreateTablesAsync();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.QueryAsync(Refused["data-modifying WITH"].Sql + "\nFOR UPDATE", transaction: tx);
        await connection.QueryAsync(Refused["SELECT INTO"].Sql + "\nFOR UPDATE", transaction: tx);
        Assert.Equal(0, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM items WHERE id = 2", transaction: tx));
        Assert.Equal(1, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM items_copy", transaction: tx));
        await tx.RollbackAsync();
    }

    [Fact]
    public async Task Sent_as_is_a_lone_CR_splits_the_statement_and_the_lock_lands_on_the_second()
    {
        await CreateTablesAsync();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.QueryAsync(Refused["a lone CR ends a -- comment"].Sql + "\nFOR UPDATE", new { }, tx);

        // The items row is not locked (the first statement had no clause); o's row is.
        Assert.True(await IsLockedAsync("items", 1) is false);
        Assert.True(await IsLockedAsync("o", 1));
        await tx.RollbackAsync();
    }

    /// <summary>True when another connection's NOWAIT lock on the row fails with 55P03.</summary>
    private async Task<bool> IsLockedAsync(string table, int id)
    {
        await using var probe = await db.DataSource.OpenConnectionAsync();
        await using var probeTx = await probe.BeginTransactionAsync();
        try
        {
            await probe.QueryAsync($"SELECT 1 FROM {table} WHERE id = @id FOR UPDATE NOWAIT", new { id }, probeTx);
            return false;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            return true;
        }
    }

    /// <summary>Accepted tricky shapes; each must lock items row 1.</summary>
    private static readonly Dictionary<string, Shape> Accepted = new()
    {
        ["parenthesised SELECT"] = new("(SELECT id, v FROM items WHERE id = 1)", ForUpdate, "", null),
        ["doubly parenthesised SELECT"] = new("((SELECT id, v FROM items WHERE id = 1))", ForUpdate.NoWait(), "", null),
        ["CR LF after a -- comment"] = new("SELECT id, v FROM items WHERE id = 1 --c\r\n", ForUpdate, "", null),
        ["trailing -- comment with a lone CR"] = new("SELECT id, v FROM items --c\rWHERE id = 1", ForUpdate, "", null),
        ["nested block comment holding ';'"] = new("SELECT id, v FROM items WHERE id = 1 /* /* nested */ ; */", ForUpdate, "", null),
        ["dollar quote with a non-ASCII letter tag"] = new("SELECT $é$ ; $é$ AS s, id FROM items WHERE id = 1", ForUpdate, "", null),
        ["dollar quote with a Latin-1 symbol tag"] = new("SELECT $a\u00A7$;$a\u00A7$ AS s, id FROM items WHERE id = 1", ForUpdate.WithTimeout(TimeSpan.FromSeconds(5)), "", null),
        ["E string with an escaped quote and ';'"] = new("SELECT E'\\';' AS s, id FROM items WHERE id = 1", ForUpdate, "", null),
        ["U& quoted identifier holding ';'"] = new("SELECT id AS U&\"d;\" FROM items WHERE id = 1", ForUpdate, "", null),
        ["keywords inside identifiers"] = new("SELECT \"update\", updated_at, id AS deleted FROM items WHERE id = 1 AND v IS NOT DISTINCT FROM v AND left('ab', 1) = 'a'", ForUpdate, "", null),
        ["FOR UPDATE inside a WHERE subquery"] = new("SELECT id FROM items WHERE id = (SELECT id FROM items WHERE id = 1 FOR UPDATE)", ForShare(), "", null),
        ["aggregates and DISTINCT inside a WHERE subquery"] = new("SELECT id FROM items WHERE id IN (SELECT DISTINCT id FROM items GROUP BY id HAVING count(*) > 0) AND id = 1", ForUpdate, "", null),
        ["WITH RECURSIVE with Of"] = new("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT i.id FROM items i JOIN r ON r.n = i.id WHERE i.id = 1", ForUpdate.Of("i"), "", null),
        ["WITH read joined to the table, with Of"] = new("WITH r AS (SELECT id FROM items WHERE id = 1) SELECT i.id, i.v FROM items i JOIN r ON r.id = i.id", ForUpdate.Of("i"), "", null),
        ["subquery in FROM"] = new("SELECT s.id FROM (SELECT id FROM items WHERE id = 1) s", ForUpdate, "", null),
        ["LEFT JOIN with Of on the preserved side"] = new("SELECT i.id FROM items i LEFT JOIN o ON o.hid = i.id WHERE i.id = 1", ForUpdate.Of("i"), "", null),
        ["set-returning function in FROM"] = new("SELECT i.id FROM items i, generate_series(1, 1) g WHERE i.id = g", ForUpdate, "", null),
        ["FOR inside substring"] = new("SELECT substring('abc' FROM 1 FOR 2) AS s, id FROM ONLY items WHERE id = 1", ForUpdate, "", null),
        ["FETCH FIRST in LockRows"] = new("SELECT id FROM items ORDER BY id FETCH FIRST 1 ROW ONLY", ForUpdate, "", null),
        ["OFFSET in a claim"] = new("SELECT id FROM items ORDER BY id OFFSET 0", null, "", null),
        ["ORDER BY and LIMIT in LockRows"] = new("SELECT id FROM items WHERE id = 1 ORDER BY id LIMIT 1", ForUpdate.SkipLocked(), "", null),
    };

    private static RowLockClause ForShare() => RowLockClause.ForShare;

    public static TheoryData<string> AcceptedShapes => new(Accepted.Keys);

    [Theory]
    [MemberData(nameof(AcceptedShapes))]
    public async Task An_accepted_tricky_shape_really_locks_the_row(string name)
    {
        await CreateTablesAsync();
        var shape = Accepted[name];
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();

        var rows = await RunAsync(tx, shape);

        Assert.NotEmpty(rows);
        Assert.True(await IsLockedAsync("items", 1), $"{name}: items row 1 is not locked");
        await tx.RollbackAsync();
        Assert.False(await IsLockedAsync("items", 1));
    }

    [Fact]
    public async Task Reads_through_a_with_query_lose_updates_when_sent_with_a_plain_locking_clause()
    {
        var table = await db.CreateHotRowTableAsync("hot");
        await Workers.RaceAsync(8, async _ =>
        {
            for (var i = 0; i < 25; i++)
            {
                await using var connection = await db.DataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var v = await connection.QuerySingleAsync<int>($"WITH r AS (SELECT id, v FROM {table} WHERE id = @id) SELECT v FROM r FOR UPDATE", new { id = 1 }, tx);
                await connection.ExecuteAsync($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx);
                await tx.CommitAsync();
            }
        });

        Assert.True(await db.ScalarAsync<int>($"SELECT v FROM {table}") < 8 * 25, "expected lost updates: the clause does not reach the CTE's rows");
    }

    [Fact]
    public async Task Eight_workers_locking_through_a_with_query_with_of_lose_no_update()
    {
        var table = await db.CreateHotRowTableAsync("hot");
        await Workers.RaceAsync(8, async _ =>
        {
            for (var i = 0; i < 25; i++)
            {
                await using var connection = await db.DataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var rows = await tx.LockRowsAsync<int>(
                    $"WITH r AS (SELECT id FROM {table} WHERE id = @id) SELECT h.v FROM {table} h JOIN r ON r.id = h.id", new { id = 1 }, RowLockClause.ForUpdate.Of("h"));
                await connection.ExecuteAsync($"UPDATE {table} SET v = @v WHERE id = 1", new { v = rows[0] + 1 }, tx);
                await tx.CommitAsync();
            }
        });

        Assert.Equal(8 * 25, await db.ScalarAsync<int>($"SELECT v FROM {table}"));
    }

    [Fact]
    public async Task The_issue_cte_read_is_refused_and_names_the_way_out()
    {
        var table = await db.CreateHotRowTableAsync("hot");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Assert.ThrowsAsync<ArgumentException>(() =>
            tx.LockRowsAsync<int>($"WITH r AS (SELECT id, v FROM {table} WHERE id = @id) SELECT id, v FROM r", new { id = 1 }, RowLockClause.ForUpdate));
        Assert.Equal("selectSql", error.ParamName);
        Assert.Contains("Of(", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("nowait")]
    [InlineData("timeout")]
    public async Task A_server_error_the_scanner_cannot_see_leaves_a_nowait_or_timed_callers_transaction_usable(string policy)
    {
        // A user-defined aggregate is not in the text's list (a view with DISTINCT now is: the server check reads views):
        // PostgreSQL rejects the clause only once it is sent.
        await CreateTablesAsync();
        await db.ExecuteAsync("CREATE OR REPLACE AGGREGATE my_sum(int) (sfunc = int4pl, stype = int)");
        var clause = policy == "nowait" ? RowLockClause.ForUpdate.NoWait() : RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromSeconds(5));
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("UPDATE items SET v = 11 WHERE id = 1", transaction: tx);

        var error = await Assert.ThrowsAsync<PostgresException>(() => tx.LockRowsAsync<int>("SELECT my_sum(v) FROM items", null, clause));

        Assert.Equal(PostgresErrorCodes.FeatureNotSupported, error.SqlState);
        Assert.Equal(11, await connection.ExecuteScalarAsync<int>("SELECT v FROM items WHERE id = 1", transaction: tx));
        Assert.Equal("0", await connection.ExecuteScalarAsync<string>("SHOW lock_timeout", transaction: tx));
        await tx.CommitAsync();
        Assert.Equal(11, await db.ScalarAsync<int>("SELECT v FROM items WHERE id = 1"));
        await db.ExecuteAsync("UPDATE items SET v = 10 WHERE id = 1");
    }

    [Fact]
    public async Task A_server_error_the_scanner_cannot_see_aborts_a_waiting_callers_transaction()
    {
        await CreateTablesAsync();
        await db.ExecuteAsync("CREATE OR REPLACE AGGREGATE my_sum(int) (sfunc = int4pl, stype = int)");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();

        var error = await Assert.ThrowsAsync<PostgresException>(() => tx.LockRowsAsync<int>("SELECT my_sum(v) FROM items", null, RowLockClause.ForUpdate));

        Assert.Equal(PostgresErrorCodes.FeatureNotSupported, error.SqlState);
        var next = await Assert.ThrowsAsync<PostgresException>(() => connection.ExecuteScalarAsync<int>("SELECT 1", transaction: tx));
        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, next.SqlState);
        await tx.RollbackAsync();
    }
}
