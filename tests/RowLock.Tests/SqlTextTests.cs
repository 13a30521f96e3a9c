using RowLock.Internal;

namespace RowLock.Tests;

public sealed class SqlTextTests
{
    [Theory]
    [InlineData("SELECT * FROM t WHERE id = @id")]
    [InlineData("select * from t -- a comment; with a semicolon\n")]
    [InlineData("SELECT ';' AS s, \"odd;name\" FROM t /* ; FOR UPDATE */")]
    [InlineData("SELECT $$;$$, $tag$ FOR UPDATE $tag$ FROM t WHERE id = $1")]
    [InlineData("SELECT E'it\\'s; FOR UPDATE' FROM t")]
    [InlineData("SELECT substring(name for 3) FROM t")]
    [InlineData("SELECT * FROM t /* nested /* ; */ still comment */")]
    public void Valid_selects_pass(string sql) => SqlText.ValidateSelect(sql, "sql", RowLockClause.ForUpdate, claim: false);

    [Theory]
    [InlineData("", "The SQL is empty.")]
    [InlineData("  \n ", "The SQL is empty.")]
    [InlineData("-- only a comment", "The SQL holds no statement")]
    [InlineData("SELECT 1;", "Remove the trailing ';'")]
    [InlineData("SELECT 1; -- done", "Remove the trailing ';'")]
    [InlineData("SELECT 1; DELETE FROM t", "The SQL holds several statements.")]
    [InlineData("SELECT * FROM t FOR UPDATE", "The SQL already has a locking clause")]
    [InlineData("SELECT * FROM t for no key update", "The SQL already has a locking clause")]
    [InlineData("SELECT * FROM t FOR SHARE", "The SQL already has a locking clause")]
    [InlineData("SELECT * FROM t FOR KEY SHARE", "The SQL already has a locking clause")]
    [InlineData("DELETE FROM t", "The SQL must be a SELECT")]
    [InlineData("WITH x AS (SELECT id FROM t FOR UPDATE) SELECT * FROM x", "The SQL starts with WITH")]
    [InlineData("SELECT 'unterminated", "The SQL has an unterminated string literal.")]
    [InlineData("SELECT \"unterminated", "The SQL has an unterminated quoted identifier.")]
    [InlineData("SELECT 1 /* unterminated", "The SQL has an unterminated /* comment")]
    [InlineData("SELECT $x$ unterminated", "The SQL has an unterminated dollar-quoted string.")]
    public void Bad_sql_is_rejected_with_a_clear_message(string sql, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => SqlText.ValidateSelect(sql, "sql", RowLockClause.ForUpdate, claim: false));
        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
        Assert.Equal("sql", error.ParamName);
    }

    [Fact]
    public void Null_sql_is_an_argument_null_error() =>
        Assert.Throws<ArgumentNullException>(() => SqlText.ValidateSelect(null!, "sql", RowLockClause.ForUpdate, claim: false));

    [Fact]
    public void Claims_reject_a_limit_of_their_own()
    {
        var error = Assert.Throws<ArgumentException>(() => SqlText.ValidateSelect("SELECT id FROM jobs LIMIT 5", "sql", RowLockClause.ForUpdate.SkipLocked(), claim: true));
        Assert.StartsWith("The SQL already has a LIMIT.", error.Message, StringComparison.Ordinal);
        SqlText.ValidateSelect("SELECT id FROM jobs WHERE id IN (SELECT id FROM x LIMIT 5)", "sql", RowLockClause.ForUpdate.SkipLocked(), claim: true);
    }

    private static void Lock(string sql, RowLockClause clause) => SqlText.ValidateSelect(sql, "selectSql", clause, claim: false);

    private static void Claim(string sql) => SqlText.ValidateSelect(sql, "selectSql", RowLockClause.ForUpdate.SkipLocked(), claim: true);

    /// <summary>Refusals: the SQL, whether it is a claim, the Of list ("" for none), and the construct the message must name.</summary>
    public static TheoryData<string, bool, string, string> Refusals => new()
    {
        { "SELECT * FROM t WHERE id = 1 --c\r; SELECT * FROM t2", false, "", "several statements" },
        { "SELECT t.*, (SELECT max(v) FROM u) FROM t", false, "", "subquery in its select list" },
        { "SELECT t.*, EXISTS (SELECT 1 FROM u) FROM t", false, "", "subquery in its select list" },
        { "SELECT * FROM f()", false, "", "function f()" },
        { "SELECT * FROM s.f(1) x", false, "", "function f()" },
        { "SELECT * FROM ROWS FROM (f(), g()) r", false, "", "ROWS FROM" },
        { "SELECT * FROM t, LATERAL f(t.id) x", false, "", "function f()" },
        { "SELECT * FROM (SELECT * FROM f()) s", false, "", "function f()" },
        { "SELECT * FROM (SELECT * FROM f()) s", false, "s", "function f()" },
        { "SELECT * FROM t JOIN f() x ON true", false, "x", "function f()" },
        { "SELECT * FROM t, XMLTABLE('/a' PASSING t.x COLUMNS b int) x", false, "", "function xmltable()" },
        { "SELECT (SELECT v FROM t WHERE id = 1) AS v", false, "", "subquery in its select list" },
        { "SELECT 1", false, "", "reads no table" },
        { "SELECT * FROM generate_series(1, 3) g", false, "", "reads no table" },
        { "SELECT * FROM (VALUES (1)) v(id)", false, "", "reads no table" },
        { "SELECT * FROM (SELECT 1) s", false, "", "reads no table" },
        { "SELECT * FROM t, (VALUES (1)) v(id)", false, "v", "names no table" },
        { "SELECT * FROM f()", true, "", "function f()" },
        { "SELECT 1 AS id", true, "", "reads no table" },
        { "SELECT * FROM t WHERE id = 1 --c\r;", false, "", "trailing ';'" },
        { "SELECT * FROM t /* /* nested */ ; */ ; SELECT 2", false, "", "several statements" },
        { "SELECT a$x$;$x$ $x$ FROM t", false, "", "several statements" },
        { "SELECT $\u0436$ ; $\u0436$ FROM t", false, "", "dollar-quote tag" },
        { "SELECT E'\\\\'; DELETE FROM t; --'", false, "", "several statements" },
        { "SELECT 1 ) FROM t", false, "", "')' that closes nothing" },
        { "SELECT (1 FROM t", false, "", "'(' that is never closed" },
        { "(SELECT * FROM t) ORDER BY id", false, "", "outer parentheses" },
        { "(SELECT * FROM t) UNION ALL (SELECT * FROM t2)", false, "", "UNION" },
        { "()", false, "", "only parentheses" },
        { "TABLE t", false, "", "SELECT * FROM" },
        { "VALUES (1), (2)", false, "", "VALUES" },
        { "INSERT INTO t VALUES (1) RETURNING *", false, "", "INSERT" },
        { "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", false, "", "MERGE" },
        { "SELECT * FROM t WHERE id IN (WITH d AS (DELETE FROM t RETURNING id) SELECT id FROM d)", false, "", "DELETE" },
        { "WITH d AS (UPDATE t SET v = 1 RETURNING id) SELECT * FROM t JOIN d USING (id)", false, "t", "UPDATE" },
        { "WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM i", false, "", "INSERT" },
        { "SELECT * INTO t2 FROM t", false, "", "INTO" },
        { "WITH r AS (SELECT * FROM t) SELECT * FROM r", false, "", "WITH" },
        { "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM t JOIN r ON r.n = t.id", false, "", "WITH" },
        { "WITH r AS (SELECT * FROM t) SELECT * FROM r", false, "r", "WITH query" },
        { "WITH \"R\" AS (SELECT * FROM t) SELECT * FROM \"R\"", false, "R", "WITH query" },
        { "WITH r AS (SELECT * FROM t) DELETE FROM t", false, "t", "DELETE" },
        { "WITH r AS (SELECT * FROM t) VALUES (1)", false, "t", "VALUES" },
        { "WITH r AS (SELECT * FROM t) SELECT s.* FROM (SELECT * FROM r) s", false, "s", "WITH query 'r'" },
        { "SELECT * FROM (WITH r AS (SELECT * FROM t) SELECT * FROM r) s", false, "", "WITH queries" },
        { "SELECT * FROM t UNION SELECT * FROM t2", false, "", "UNION" },
        { "SELECT * FROM t INTERSECT SELECT * FROM t2", false, "", "INTERSECT" },
        { "SELECT * FROM t EXCEPT ALL SELECT * FROM t2", false, "", "EXCEPT" },
        { "select distinct id from t", false, "", "DISTINCT" },
        { "SELECT DISTINCT ON (a) * FROM t", true, "", "DISTINCT" },
        { "SELECT a FROM t GROUP BY a", false, "", "GROUP BY" },
        { "SELECT a FROM t GROUP BY ROLLUP (a)", false, "", "GROUP BY" },
        { "SELECT 1 FROM t HAVING true", false, "", "HAVING" },
        { "SELECT COUNT(*) FROM t", false, "", "COUNT()" },
        { "SELECT id, array_agg(v) FROM t", false, "", "array_agg" },
        { "SELECT string_agg(v, ',') FROM t", false, "", "string_agg" },
        { "SELECT bool_and(ok) FROM t", false, "", "bool_and" },
        { "SELECT * FROM t ORDER BY max(v)", false, "", "max" },
        { "SELECT myagg(v) FILTER (WHERE v > 0) FROM t", false, "", "FILTER" },
        { "SELECT rank() OVER (ORDER BY v) FROM t", false, "", "window function" },
        { "SELECT id FROM t WINDOW w AS (ORDER BY id)", false, "", "WINDOW" },
        { "SELECT unnest(tags) FROM t", false, "", "unnest" },
        { "SELECT * FROM t LEFT JOIN u ON u.id = t.id", false, "", "LEFT JOIN" },
        { "SELECT * FROM t NATURAL LEFT OUTER JOIN u", false, "", "LEFT JOIN" },
        { "SELECT * FROM t RIGHT JOIN u ON u.id = t.id", false, "", "RIGHT JOIN" },
        { "SELECT * FROM t FULL OUTER JOIN u ON u.id = t.id", false, "", "FULL JOIN" },
        { "SELECT * FROM t LEFT JOIN u ON u.id = t.id", false, "u", "nullable side of a LEFT JOIN" },
        { "SELECT * FROM t x LEFT JOIN u AS y ON y.id = x.id", false, "y", "nullable side of a LEFT JOIN" },
        { "SELECT * FROM t LEFT JOIN (u JOIN w ON w.id = u.id) ON u.id = t.id", false, "w", "nullable side of a LEFT JOIN" },
        { "SELECT * FROM t JOIN (u LEFT JOIN w ON w.id = u.id) ON u.id = t.id", false, "w", "nullable side of a LEFT JOIN" },
        { "SELECT * FROM a JOIN b ON b.id = a.id RIGHT JOIN c ON c.id = b.id", false, "a", "nullable side of a RIGHT JOIN" },
        { "SELECT * FROM t FULL JOIN u ON u.id = t.id", false, "t", "nullable side of a FULL JOIN" },
        { "SELECT * FROM t LEFT JOIN LATERAL (SELECT * FROM u WHERE u.tid = t.id) s ON true", false, "s", "nullable side of a LEFT JOIN" },
        { "SELECT * FROM t LEFT JOIN ((u JOIN w ON true)) ON true", false, "w", "nullable side of a LEFT JOIN" },
        { "SELECT * FROM (SELECT * FROM t LEFT JOIN u ON u.id = t.id) s", false, "", "LEFT JOIN" },
        { "SELECT * FROM t, LATERAL (SELECT count(*) FROM u WHERE u.t = t.id) c", false, "", "count" },
        { "SELECT * FROM t JOIN (SELECT DISTINCT id FROM u) s ON s.id = t.id", false, "s", "DISTINCT" },
        { "SELECT * FROM t FOR UPDATE", false, "", "already has a locking clause" },
        { "SELECT * FROM t FOR NO KEY UPDATE", false, "", "already has a locking clause" },
        { "SELECT * FROM t FOR KEY SHARE OF t", false, "", "already has a locking clause" },
        { "SELECT * FROM t FOR READ ONLY", false, "", "FOR READ ONLY" },
        { "SELECT * FROM t LIMIT 5", true, "", "LIMIT" },
        { "SELECT * FROM t ORDER BY id FETCH FIRST 5 ROWS ONLY", true, "", "FETCH" },
        { "SELECT * FROM t ORDER BY id OFFSET 5 ROWS FETCH NEXT 5 ROWS ONLY", true, "", "FETCH" },
        { "SELECT * FROM t ORDER BY v FETCH FIRST 1 ROW WITH TIES", true, "", "FETCH" },
        { "SELECT\u00A0* FROM t", false, "", "must be a SELECT" },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void Shapes_a_locking_clause_cannot_lock_are_refused_naming_the_construct(string sql, bool claim, string of, string construct)
    {
        var clause = of.Length == 0 ? RowLockClause.ForUpdate : RowLockClause.ForUpdate.Of(of);
        var error = Assert.Throws<ArgumentException>(() =>
        {
            if (claim)
            {
                Claim(sql);
            }
            else
            {
                Lock(sql, clause);
            }
        });
        Assert.Equal("selectSql", error.ParamName);
        Assert.Contains(construct, error.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, string> Accepted => new()
    {
        { "SELECT * FROM t WHERE id = 1 --c\r\n", "" },
        { "SELECT * FROM t WHERE id = 1 --c\r", "" },
        { "SELECT * FROM t --c\rWHERE id = 1", "" },
        { "SELECT * FROM t /* /* nested */ ; */", "" },
        { "SELECT $\u00E9$ ; $\u00E9$ FROM t", "" },
        { "SELECT $a$ $b$ ; $b$ $a$ FROM t", "" },
        { "SELECT * FROM t WHERE id = $1", "" },
        { "SELECT E'\\';' FROM t", "" },
        { "SELECT e'\\\\' AS \"x;\" FROM t", "" },
        { "SELECT U&\"d;\" FROM t", "" },
        { "SELECT U&'d\\0061t;' FROM t", "" },
        { "SELECT B'01', X'1F', N'n;' FROM t", "" },
        { "SELECT \"update\", \"delete\", updated_at, t.delete, x AS update FROM t", "" },
        { "SELECT * FROM t WHERE a IS DISTINCT FROM b AND c IS NOT DISTINCT FROM d", "" },
        { "SELECT a IS DISTINCT FROM b AS d, generate_series FROM t", "" },
        { "SELECT left(name, 1), right(name, 1) FROM t", "" },
        { "SELECT substring(name FROM 1 FOR 3), extract(year FROM at) FROM t", "" },
        { "SELECT * FROM t WHERE id = (SELECT id FROM u FOR UPDATE)", "" },
        { "SELECT * FROM t WHERE id IN (SELECT DISTINCT id FROM u GROUP BY id HAVING count(*) > 1 UNION SELECT 1)", "" },
        { "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u LEFT JOIN w ON true)", "" },
        { "(SELECT * FROM t)", "" },
        { "((SELECT * FROM t WHERE id = 1))", "" },
        { "SELECT * FROM (SELECT * FROM t) s", "" },
        { "SELECT * FROM t, generate_series(1, 3) g", "" },
        { "SELECT * FROM t JOIN u ON u.id = t.id", "" },
        { "SELECT * FROM t LEFT JOIN u ON u.id = t.id", "t" },
        { "SELECT * FROM t x LEFT JOIN u y ON y.id = x.id", "x" },
        { "SELECT * FROM t RIGHT JOIN u ON u.id = t.id", "u" },
        { "SELECT * FROM t LEFT JOIN (SELECT DISTINCT id FROM u) s ON s.id = t.id", "t" },
        { "SELECT * FROM t LEFT JOIN LATERAL (SELECT * FROM u WHERE u.tid = t.id LIMIT 1) s ON true", "t" },
        { "SELECT * FROM t LEFT JOIN generate_series(t.a, 3) g ON true", "t" },
        { "SELECT * FROM t JOIN (SELECT id FROM u GROUP BY id) s ON s.id = t.id", "t" },
        { "WITH r AS (SELECT id FROM u) SELECT t.* FROM t JOIN r ON r.id = t.id", "t" },
        { "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM t JOIN r ON r.n = t.id", "t" },
        { "WITH r AS MATERIALIZED (SELECT id FROM u FOR UPDATE), q AS (SELECT 1) SELECT * FROM t WHERE id IN (SELECT id FROM r)", "t" },
        { "SELECT * FROM t ORDER BY id FETCH FIRST 1 ROW ONLY", "" },
        { "SELECT * FROM t ORDER BY v FETCH FIRST 1 ROW WITH TIES", "" },
        { "SELECT * FROM t ORDER BY id OFFSET 10", "" },
        { "SELECT * FROM t ORDER BY id LIMIT 10 OFFSET 10", "" },
        { "SELECT * FROM t, unnest(@ids) AS k(id) WHERE t.id = k.id", "" },
        { "SELECT * FROM t JOIN pg_catalog.generate_series(1, 3) g ON g = t.id", "" },
        { "SELECT * FROM t JOIN (VALUES (1), (2)) v(id) USING (id)", "" },
        { "SELECT * FROM t JOIN f() x ON x.id = t.id", "t" },
        { "SELECT * FROM ONLY t WHERE id = 1", "" },
        { "SELECT * FROM t TABLESAMPLE bernoulli (50) REPEATABLE (1)", "" },
        { "SELECT * FROM s.t AS x(a, b)", "" },
    };

    [Theory]
    [MemberData(nameof(Accepted))]
    public void Tricky_shapes_the_clause_locks_pass(string sql, string of) =>
        Lock(sql, of.Length == 0 ? RowLockClause.ForUpdate : RowLockClause.ForUpdate.Of(of));

    [Theory]
    [InlineData("SELECT * FROM t ORDER BY id OFFSET 5")]
    [InlineData("SELECT * FROM t WHERE id IN (SELECT id FROM u FETCH FIRST 3 ROWS ONLY)")]
    public void Claims_accept_an_offset_and_a_nested_fetch(string sql) => Claim(sql);

    [Fact]
    public void With_ties_is_refused_with_skip_locked_only() =>
        Assert.Contains("WITH TIES", Assert.Throws<ArgumentException>(() =>
            Lock("SELECT * FROM t ORDER BY v FETCH FIRST 1 ROW WITH TIES", RowLockClause.ForShare.SkipLocked())).Message, StringComparison.Ordinal);
}
