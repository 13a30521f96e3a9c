using System.Collections.Concurrent;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// The oracle for core SQL shapes: every shape in the corpus goes through the same checks. An accepted lock shape must
/// end exact under 4 workers x 10 concurrent increments (read through the shape, then UPDATE by id) and, while held, make a
/// second connection's FOR UPDATE NOWAIT on each returned row's table row fail with 55P03. An accepted claim shape must hand
/// each of 20 jobs to exactly one of 4 workers. A refused shape must throw ArgumentException with nothing sent (text
/// refusals), or with only the catalog lookup sent and never the locking statement (views, checked on the server), and
/// leave the transaction usable. A new shape is one line.
/// </summary>
/// <remarks>
/// Placeholders, unique per shape: {t} the counter table (id, qty, done, claims; rows 1..20), {u} a second table
/// (id, tid -> {t}.id), {v} a view, {w} a second view, {f} a function, {s} a schema. Each shape reads row @id = 1.
/// </remarks>
public sealed class SqlLockingShapeOracleTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    public enum Expect
    {
        /// <summary>LockRowsAsync: increments through it end exact; its rows are locked while held.</summary>
        Exact,

        /// <summary>ClaimRowsAsync (Clause null): every job claimed exactly once.</summary>
        ClaimedOnce,

        /// <summary>Refused from the text: nothing at all is sent.</summary>
        RefusedByText,

        /// <summary>Refused by the server check (a view): only the catalog lookup is sent, never the locking statement.</summary>
        RefusedByServer,
    }

    /// <summary>One corpus line. <paramref name="Clause"/> null means ClaimRowsAsync; <paramref name="Base"/> is the table whose rows the shape returns.</summary>
    public sealed record Shape(string Setup, string Sql, RowLockClause? Clause, Expect Expect, string Base = "{t}");

    private const string ViewOverT = "CREATE VIEW {v} AS SELECT id, qty, done FROM {t};";
    private const string FunctionOverT = "CREATE FUNCTION {f}() RETURNS SETOF {t} LANGUAGE sql STABLE AS 'SELECT * FROM {t}';";
    private const string IntFunction = "CREATE FUNCTION {f}() RETURNS SETOF int LANGUAGE sql STABLE AS 'SELECT id FROM {t}';";
    private const string SchemaTable = "CREATE SCHEMA {s}; CREATE TABLE {s}.stock (id int PRIMARY KEY, qty int NOT NULL); INSERT INTO {s}.stock SELECT g, 0 FROM generate_series(1, 20) g;";
    private const string QuotedTable = "CREATE TABLE \"{t} Odd\" (\"Id\" int PRIMARY KEY, \"Qty\" int NOT NULL); INSERT INTO \"{t} Odd\" SELECT g, 0 FROM generate_series(1, 20) g;";

    private static readonly RowLockClause ForUpdate = RowLockClause.ForUpdate;

    public static readonly Dictionary<string, Shape> Corpus = new()
    {
        // Accepted: tables, aliases, joins, Of lists
        ["table"] = new("", "SELECT id, qty FROM {t} WHERE id = @id", ForUpdate, Expect.Exact),
        ["table, FOR NO KEY UPDATE"] = new("", "SELECT id, qty FROM {t} WHERE id = @id", RowLockClause.ForNoKeyUpdate, Expect.Exact),
        ["table, timed wait"] = new("", "SELECT id, qty FROM {t} WHERE id = @id", ForUpdate.WithTimeout(TimeSpan.FromSeconds(60)), Expect.Exact),
        ["alias"] = new("", "SELECT x.id, x.qty FROM {t} AS x WHERE x.id = @id", ForUpdate, Expect.Exact),
        ["join"] = new("", "SELECT x.id, x.qty FROM {t} x JOIN {u} y ON y.tid = x.id WHERE x.id = @id", ForUpdate, Expect.Exact),
        ["join, Of the table"] = new("", "SELECT x.id, x.qty FROM {t} x JOIN {u} y ON y.tid = x.id WHERE x.id = @id", ForUpdate.Of("x"), Expect.Exact),
        ["join, Of list"] = new("", "SELECT x.id, x.qty FROM {t} x, {u} y WHERE y.tid = x.id AND x.id = @id", ForUpdate.Of("x", "y"), Expect.Exact),
        ["parenthesised join"] = new("", "SELECT x.id, x.qty FROM ({t} x JOIN {u} y ON y.tid = x.id) WHERE x.id = @id", ForUpdate, Expect.Exact),
        ["LEFT JOIN, Of the preserved side"] = new("", "SELECT x.id, x.qty FROM {t} x LEFT JOIN {u} y ON y.tid = x.id WHERE x.id = @id", ForUpdate.Of("x"), Expect.Exact),
        ["schema-qualified"] = new(SchemaTable, "SELECT id, qty FROM {s}.stock WHERE id = @id", ForUpdate, Expect.Exact, "{s}.stock"),
        ["quoted identifiers"] = new(QuotedTable, "SELECT \"Id\" AS id, \"Qty\" AS qty FROM \"{t} Odd\" WHERE \"Id\" = @id", ForUpdate, Expect.Exact, "\"{t} Odd\""),
        ["comments and dollar quotes"] = new("", "SELECT id, qty /* ; */ FROM {t} -- ;\nWHERE id = @id AND $x$;$x$ = ';'", ForUpdate, Expect.Exact),

        // Accepted: views (checked on the server), subqueries, LATERAL, WITH with Of, functions beside a table
        ["plain view"] = new(ViewOverT, "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.Exact),
        ["view over a join"] = new("CREATE VIEW {v} AS SELECT a.id, a.qty, b.id AS uid FROM {t} a JOIN {u} b ON b.tid = a.id;", "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.Exact),
        ["view over a view"] = new(ViewOverT + "CREATE VIEW {w} AS SELECT id, qty FROM {v};", "SELECT id, qty FROM {w} WHERE id = @id", ForUpdate, Expect.Exact),
        ["subquery in FROM"] = new("", "SELECT s.id, s.qty FROM (SELECT id, qty FROM {t}) s WHERE s.id = @id", ForUpdate, Expect.Exact),
        ["subquery in FROM, Of the subquery"] = new("", "SELECT s.id, s.qty FROM (SELECT id, qty FROM {t}) s JOIN {u} y ON y.tid = s.id WHERE s.id = @id", ForUpdate.Of("s"), Expect.Exact),
        ["LATERAL subquery"] = new("", "SELECT x.id, x.qty FROM {u} y, LATERAL (SELECT id, qty FROM {t} WHERE id = y.tid) x WHERE x.id = @id", ForUpdate, Expect.Exact),
        ["subquery in WHERE"] = new("", "SELECT id, qty FROM {t} WHERE id IN (SELECT tid FROM {u} WHERE tid = @id)", ForUpdate, Expect.Exact),
        ["WITH, Of the table"] = new("", "WITH k AS (SELECT tid FROM {u} WHERE tid = @id) SELECT x.id, x.qty FROM {t} x JOIN k ON k.tid = x.id", ForUpdate.Of("x"), Expect.Exact),
        ["VALUES joined to the table"] = new("", "SELECT x.id, x.qty FROM {t} x JOIN (VALUES (@id)) k(id) ON k.id = x.id", ForUpdate, Expect.Exact),
        ["built-in generate_series beside the table"] = new("", "SELECT x.id, x.qty FROM {t} x, generate_series(1, 1) g WHERE x.id = @id AND g = 1", ForUpdate, Expect.Exact),
        ["function in FROM, Of the table"] = new(IntFunction, "SELECT x.id, x.qty FROM {t} x JOIN {f}() g ON g = x.id WHERE x.id = @id", ForUpdate.Of("x"), Expect.Exact),

        // Accepted claims
        ["claim from a table"] = new("", "SELECT id, qty FROM {t} WHERE NOT done ORDER BY id", null, Expect.ClaimedOnce),
        ["claim through a plain view"] = new(ViewOverT, "SELECT id, qty FROM {v} WHERE NOT done ORDER BY id", null, Expect.ClaimedOnce),
        ["claim through a join"] = new("", "SELECT x.id, x.qty FROM {t} x JOIN {u} y ON y.tid = x.id WHERE NOT x.done ORDER BY x.id", null, Expect.ClaimedOnce),

        // Refused from the text: PostgreSQL would run these and lock nothing, or only part of what they return
        ["function in FROM"] = new(FunctionOverT, "SELECT id, qty FROM {f}() WHERE id = @id", ForUpdate, Expect.RefusedByText),
        ["ROWS FROM"] = new(FunctionOverT, "SELECT r.id, r.qty FROM ROWS FROM ({f}()) AS r WHERE r.id = @id", ForUpdate, Expect.RefusedByText),
        ["subquery over a function"] = new(FunctionOverT, "SELECT s.id, s.qty FROM (SELECT * FROM {f}()) s WHERE s.id = @id", ForUpdate, Expect.RefusedByText),
        ["subquery over a function, Of the subquery"] = new(FunctionOverT, "SELECT s.id, s.qty FROM (SELECT * FROM {f}()) s WHERE s.id = @id", ForUpdate.Of("s"), Expect.RefusedByText),
        ["LATERAL function"] = new(FunctionOverT, "SELECT r.id, r.qty FROM {u} y, LATERAL {f}() r WHERE r.id = y.tid AND r.id = @id", ForUpdate, Expect.RefusedByText),
        ["Of names a function"] = new(FunctionOverT, "SELECT r.id, r.qty FROM {u} y JOIN {f}() r ON r.id = y.tid WHERE r.id = @id", ForUpdate.Of("r"), Expect.RefusedByText),
        ["no FROM, scalar subquery"] = new("", "SELECT @id AS id, (SELECT qty FROM {t} WHERE id = @id) AS qty", ForUpdate, Expect.RefusedByText),
        ["scalar subquery in the select list"] = new("", "SELECT y.tid AS id, (SELECT qty FROM {t} WHERE id = y.tid) AS qty FROM {u} y WHERE y.tid = @id", ForUpdate, Expect.RefusedByText),
        ["VALUES only"] = new("", "SELECT k.id, 0 AS qty FROM (VALUES (@id)) k(id)", ForUpdate, Expect.RefusedByText),
        ["built-in generate_series only"] = new("", "SELECT g AS id, 0 AS qty FROM generate_series(1, 1) g", ForUpdate, Expect.RefusedByText),
        ["WITH without Of"] = new("", "WITH k AS (SELECT id, qty FROM {t} WHERE id = @id) SELECT id, qty FROM k", ForUpdate, Expect.RefusedByText),
        ["WITH, Of the WITH query"] = new("", "WITH k AS (SELECT id, qty FROM {t} WHERE id = @id) SELECT id, qty FROM k", ForUpdate.Of("k"), Expect.RefusedByText),
        ["scalar subquery nested in a select-list expression"] = new("", "SELECT y.tid AS id, coalesce(0, (SELECT qty FROM {t} WHERE id = y.tid)) AS qty FROM {u} y WHERE y.tid = @id", ForUpdate, Expect.RefusedByText),
        ["subquery in the arguments of a built-in function in FROM"] = new("", "SELECT y.tid AS id, q AS qty FROM {u} y, unnest(ARRAY(SELECT qty FROM {t} WHERE id = y.tid)) q WHERE y.tid = @id", ForUpdate, Expect.RefusedByText),
        ["claim from a function"] = new(FunctionOverT, "SELECT id, qty FROM {f}() WHERE NOT done ORDER BY id", null, Expect.RefusedByText),
        ["claim with no FROM"] = new("", "SELECT 1 AS id, 0 AS qty", null, Expect.RefusedByText),

        // Refused by the server check: only the view's definition shows it
        ["view defined with WITH"] = new("CREATE VIEW {v} AS WITH k AS (SELECT id, qty FROM {t}) SELECT id, qty FROM k;", "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.RefusedByServer),
        ["view over a function"] = new(FunctionOverT + "CREATE VIEW {v} AS SELECT id, qty, done FROM {f}();", "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.RefusedByServer),
        ["view with a scalar subquery"] = new("CREATE VIEW {v} AS SELECT y.tid AS id, (SELECT qty FROM {t} WHERE id = y.tid) AS qty FROM {u} y;", "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.RefusedByServer),
        ["view over VALUES"] = new("CREATE VIEW {v} AS SELECT k.id, 0 AS qty FROM (VALUES (1)) k(id);", "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.RefusedByServer),
        ["view over a view over a function"] = new(FunctionOverT + "CREATE VIEW {w} AS SELECT id, qty, done FROM {f}(); CREATE VIEW {v} AS SELECT id, qty FROM {w};", "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.RefusedByServer),
        ["view over a function, Of the view"] = new(FunctionOverT + "CREATE VIEW {v} AS SELECT id, qty, done FROM {f}();", "SELECT x.id, x.qty FROM {v} x JOIN {u} y ON y.tid = x.id WHERE x.id = @id", ForUpdate.Of("x"), Expect.RefusedByServer),
        ["view with DISTINCT"] = new("CREATE VIEW {v} AS SELECT DISTINCT id, qty FROM {t};", "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.RefusedByServer),
        ["view over a LEFT JOIN"] = new("CREATE VIEW {v} AS SELECT a.id, a.qty FROM {t} a LEFT JOIN {u} b ON b.tid = a.id;", "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.RefusedByServer),
        ["materialized view"] = new("CREATE MATERIALIZED VIEW {v} AS SELECT id, qty FROM {t};", "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.RefusedByServer),
        ["TABLE view in a FROM subquery, view over a function"] = new(FunctionOverT + "CREATE VIEW {v} AS SELECT id, qty, done FROM {f}();", "SELECT s.id, s.qty FROM {u} y JOIN (TABLE {v}) s ON s.id = y.tid WHERE s.id = @id", ForUpdate, Expect.RefusedByServer),
        ["view with a scalar subquery nested in an expression"] = new("CREATE VIEW {v} AS SELECT y.tid AS id, coalesce(0, (SELECT qty FROM {t} WHERE id = y.tid)) AS qty FROM {u} y;", "SELECT id, qty FROM {v} WHERE id = @id", ForUpdate, Expect.RefusedByServer),
        ["view over a function, named as a U&\"...\" identifier"] = new(FunctionOverT + "CREATE VIEW {v} AS SELECT id, qty, done FROM {f}();", "SELECT id, qty FROM U&\"{v}\" WHERE id = @id", ForUpdate, Expect.RefusedByText),
        ["claim through a view over a function"] = new(FunctionOverT + "CREATE VIEW {v} AS SELECT id, qty, done FROM {f}();", "SELECT id, qty FROM {v} WHERE NOT done ORDER BY id", null, Expect.RefusedByServer),
    };

    public static TheoryData<string> Names => new(Corpus.Keys);

    private const int Workers = 4;
    private const int Increments = 10;
    private const int Jobs = 20;

    public sealed record Row(int Id, int Qty);

    [Theory]
    [MemberData(nameof(Names))]
    public async Task Every_shape_ends_exact_claims_once_or_is_refused_before_the_lock_is_sent(string name)
    {
        var shape = Corpus[name];
        var names = Placeholders();
        string Fill(string text) => names.Aggregate(text, (s, p) => s.Replace(p.Key, p.Value, StringComparison.Ordinal));
        await db.ExecuteAsync(Fill("""
            CREATE TABLE {t} (id int PRIMARY KEY, qty int NOT NULL, done bool NOT NULL DEFAULT false, claims int NOT NULL DEFAULT 0);
            INSERT INTO {t} (id, qty) SELECT g, 0 FROM generate_series(1, 20) g;
            CREATE TABLE {u} (id int PRIMARY KEY, tid int NOT NULL);
            INSERT INTO {u} SELECT g, g FROM generate_series(1, 20) g;
            """) + Fill(shape.Setup));
        var sql = Fill(shape.Sql);
        var table = Fill(shape.Base);

        switch (shape.Expect)
        {
            case Expect.Exact:
                await IncrementsEndExactAsync(sql, shape.Clause!.Value, table);
                await ReturnedRowsAreLockedAsync(sql, shape.Clause!.Value, table);
                break;
            case Expect.ClaimedOnce:
                await EachJobIsClaimedOnceAsync(sql, table);
                break;
            default:
                await RefusedBeforeTheLockIsSentAsync(sql, shape, table);
                break;
        }
    }

    private static Dictionary<string, string> Placeholders()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        return new()
        {
            ["{t}"] = "oc_t_" + suffix,
            ["{u}"] = "oc_u_" + suffix,
            ["{v}"] = "oc_v_" + suffix,
            ["{w}"] = "oc_w_" + suffix,
            ["{f}"] = "oc_f_" + suffix,
            ["{s}"] = "oc_s_" + suffix,
        };
    }

    private async Task IncrementsEndExactAsync(string sql, RowLockClause clause, string table)
    {
        await Infrastructure.Workers.RaceAsync(Workers, async _ =>
        {
            for (var i = 0; i < Increments; i++)
            {
                await using var connection = await db.DataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var rows = await tx.LockRowsAsync<Row>(sql, new { id = 1 }, clause);
                var row = Assert.Single(rows);
                await connection.ExecuteAsync($"UPDATE {table} SET {Column(table, "qty")} = @qty WHERE {Column(table, "id")} = @id", new { qty = row.Qty + 1, id = row.Id }, tx);
                await tx.CommitAsync();
            }
        }).WaitAsync(TimeSpan.FromSeconds(120));

        Assert.Equal(Workers * Increments, await db.ScalarAsync<int>($"SELECT {Column(table, "qty")} FROM {table} WHERE {Column(table, "id")} = 1"));
    }

    private async Task ReturnedRowsAreLockedAsync(string sql, RowLockClause clause, string table)
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var rows = await tx.LockRowsAsync<Row>(sql, new { id = 1 }, clause);
        Assert.NotEmpty(rows);
        foreach (var row in rows)
        {
            Assert.Equal(PostgresErrorCodes.LockNotAvailable, await ProbeAsync(table, row.Id));
        }

        await tx.RollbackAsync();
        Assert.Null(await ProbeAsync(table, 1));
    }

    /// <summary>Another connection's FOR UPDATE NOWAIT on the table row: its SQLSTATE, or null when it got the lock.</summary>
    private async Task<string?> ProbeAsync(string table, int id)
    {
        await using var probe = await db.DataSource.OpenConnectionAsync();
        await using var probeTx = await probe.BeginTransactionAsync();
        try
        {
            await probe.QueryAsync($"SELECT 1 FROM {table} WHERE {Column(table, "id")} = @id FOR UPDATE NOWAIT", new { id }, probeTx);
            return null;
        }
        catch (PostgresException e)
        {
            return e.SqlState;
        }
    }

    private async Task EachJobIsClaimedOnceAsync(string sql, string table)
    {
        await Infrastructure.Workers.RaceAsync(Workers, async _ =>
        {
            while (true)
            {
                await using var connection = await db.DataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var jobs = await tx.ClaimRowsAsync<Row>(sql, null, 3);
                if (jobs.Count == 0)
                {
                    var left = await connection.ExecuteScalarAsync<long>($"SELECT count(*) FROM {table} WHERE NOT done", transaction: tx);
                    await tx.CommitAsync();
                    if (left == 0)
                    {
                        return;
                    }

                    await Task.Delay(10);
                    continue;
                }

                await Task.Delay(5); // hold the claims a moment, so the workers overlap
                await connection.ExecuteAsync($"UPDATE {table} SET claims = claims + 1, done = true WHERE id = ANY(@ids)", new { ids = jobs.Select(j => j.Id).ToArray() }, tx);
                await tx.CommitAsync();
            }
        }).WaitAsync(TimeSpan.FromSeconds(120));

        Assert.Equal(Jobs, await db.ScalarAsync<long>($"SELECT count(*) FROM {table} WHERE claims = 1"));
    }

    private async Task RefusedBeforeTheLockIsSentAsync(string sql, Shape shape, string table)
    {
        var log = new CommandLog();
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(log).SetMinimumLevel(LogLevel.Debug));
        var builder = new NpgsqlDataSourceBuilder(db.ConnectionString);
        builder.UseLoggerFactory(loggerFactory);
        await using var dataSource = builder.Build();
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();

        for (var call = 0; call < 2; call++)
        {
            log.Clear();
            var error = await Assert.ThrowsAsync<ArgumentException>(() => shape.Clause is { } clause
                ? tx.LockRowsAsync<Row>(sql, new { id = 1 }, clause)
                : tx.ClaimRowsAsync<Row>(sql, null, 3));
            Assert.Equal("selectSql", error.ParamName);

            var sent = log.Commands;
            if (shape.Expect == Expect.RefusedByText || call == 1)
            {
                Assert.Empty(sent); // the second call of a server refusal is answered from the cache
            }
            else
            {
                Assert.NotEmpty(sent);
                Assert.All(sent, text => Assert.Contains("pg_get_viewdef", text, StringComparison.Ordinal));
            }
        }

        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT 1", transaction: tx)); // the transaction is still usable
        Assert.Null(await ProbeAsync(table, 1)); // and holds no lock
        await tx.RollbackAsync();
    }

    /// <summary>Round trips per LockRowsAsync call: the server check costs one on the first call for a SQL text and data source, none after.</summary>
    [Theory]
    [InlineData("", "SELECT id, qty FROM {t} WHERE id = @id")]
    [InlineData(ViewOverT, "SELECT id, qty FROM {v} WHERE id = @id")]
    [InlineData(ViewOverT + "CREATE VIEW {w} AS SELECT id, qty FROM {v};", "SELECT id, qty FROM {w} WHERE id = @id")]
    public async Task A_repeated_lock_costs_one_round_trip_after_the_first_call(string setup, string select)
    {
        var names = Placeholders();
        string Fill(string text) => names.Aggregate(text, (s, p) => s.Replace(p.Key, p.Value, StringComparison.Ordinal));
        await db.ExecuteAsync(Fill("CREATE TABLE {t} (id int PRIMARY KEY, qty int NOT NULL, done bool NOT NULL DEFAULT false); INSERT INTO {t} VALUES (1, 0);" + setup));
        var sql = Fill(select);
        var log = new CommandLog();
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(log).SetMinimumLevel(LogLevel.Debug));
        var builder = new NpgsqlDataSourceBuilder(db.ConnectionString);
        builder.UseLoggerFactory(loggerFactory);
        await using var dataSource = builder.Build();
        await using var connection = await dataSource.OpenConnectionAsync();

        var perCall = new List<int>();
        for (var call = 0; call < 5; call++)
        {
            await using var tx = await connection.BeginTransactionAsync();
            log.Clear();
            Assert.Single(await tx.LockRowsAsync<Row>(sql, new { id = 1 }, ForUpdate.NoWait()));
            perCall.Add(log.Commands.Count);
            await tx.RollbackAsync();
        }

        var viewDepth = setup.Split("CREATE VIEW").Length - 1;
        Assert.Equal([2 + Math.Max(0, viewDepth), 1, 1, 1, 1], perCall); // lookups (one per level of views), then only the lock
    }

    [Fact]
    public async Task In_an_aborted_transaction_the_check_fails_as_the_lock_would_and_caches_nothing()
    {
        var names = Placeholders();
        string Fill(string text) => names.Aggregate(text, (s, p) => s.Replace(p.Key, p.Value, StringComparison.Ordinal));
        await db.ExecuteAsync(Fill("CREATE TABLE {t} (id int PRIMARY KEY, qty int NOT NULL, done bool NOT NULL DEFAULT false); INSERT INTO {t} VALUES (1, 0);" + ViewOverT));
        var sql = Fill("SELECT id, qty FROM {v} WHERE id = @id");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using (var aborted = await connection.BeginTransactionAsync())
        {
            await Assert.ThrowsAsync<PostgresException>(() => connection.ExecuteAsync("SELECT 1/0", transaction: aborted));
            var error = await Assert.ThrowsAsync<PostgresException>(() => aborted.LockRowsAsync<Row>(sql, new { id = 1 }, ForUpdate));
            Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState);
        }

        await using (var readOnly = await connection.BeginTransactionAsync())
        {
            await connection.ExecuteAsync("SET TRANSACTION READ ONLY", transaction: readOnly);
            var error = await Record.ExceptionAsync(() => readOnly.LockRowsAsync<Row>(sql, new { id = 1 }, ForUpdate.NoWait()));
            Assert.IsNotType<ArgumentException>(error); // the view is fine; PostgreSQL refuses the lock in a read-only transaction
            Assert.NotNull(error);
        }

        await using var tx = await connection.BeginTransactionAsync();
        Assert.Single(await tx.LockRowsAsync<Row>(sql, new { id = 1 }, ForUpdate));
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, await ProbeAsync(Fill("{t}"), 1));
    }

    /// <summary>The cache rule: a verdict is kept per connection string; a view redefined afterwards is read again only under another connection string.</summary>
    [Fact]
    public async Task A_redefined_view_is_checked_again_under_a_new_connection_string()
    {
        var names = Placeholders();
        string Fill(string text) => names.Aggregate(text, (s, p) => s.Replace(p.Key, p.Value, StringComparison.Ordinal));
        await db.ExecuteAsync(Fill("CREATE TABLE {t} (id int PRIMARY KEY, qty int NOT NULL, done bool NOT NULL DEFAULT false); INSERT INTO {t} VALUES (1, 0);" + ViewOverT + FunctionOverT));
        var sql = Fill("SELECT id, qty FROM {v} WHERE id = @id");
        await using (var connection = await db.DataSource.OpenConnectionAsync())
        await using (var tx = await connection.BeginTransactionAsync())
        {
            Assert.Single(await tx.LockRowsAsync<Row>(sql, new { id = 1 }, ForUpdate));
        }

        await db.ExecuteAsync(Fill("CREATE OR REPLACE VIEW {v} AS SELECT id, qty, done FROM {f}();"));
        await using var other = db.CreateDataSource(b => b.ApplicationName = "redefined-" + names["{v}"]);
        await using var otherConnection = await other.OpenConnectionAsync();
        await using var otherTx = await otherConnection.BeginTransactionAsync();
        var error = await Assert.ThrowsAsync<ArgumentException>(() => otherTx.LockRowsAsync<Row>(sql, new { id = 1 }, ForUpdate));
        Assert.Contains("function", error.Message, StringComparison.Ordinal);
    }

    private static string Column(string table, string column) =>
        table.StartsWith('"') ? (column == "id" ? "\"Id\"" : "\"Qty\"") : column;

    /// <summary>Records the text of every command (or batch) Npgsql executes on the data source it logs for.</summary>
    private sealed class CommandLog : ILoggerProvider
    {
        private readonly ConcurrentQueue<string> _commands = new();

        public IReadOnlyList<string> Commands => [.. _commands];

        public void Clear() => _commands.Clear();

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void Dispose()
        {
        }

        private sealed class Logger(CommandLog owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (eventId.Id == 2000) // NpgsqlEventId.ExecutingCommand: one per command or batch sent
                {
                    owner._commands.Enqueue(formatter(state, exception));
                }
            }
        }
    }
}
