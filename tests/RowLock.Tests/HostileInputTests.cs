using System.ComponentModel.DataAnnotations;
using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Bad and hostile input, table-driven: each case asserts the exception type and message, and that nothing changed on the server.</summary>
public sealed class HostileInputTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private sealed record Case(Type Exception, string Message, Func<DatabaseFixture, NpgsqlTransaction, Task> Act);

    private static readonly Dictionary<string, Case> Cases = new()
    {
        ["null sql"] = new(typeof(ArgumentNullException), "Value cannot be null. (Parameter 'selectSql')", (_, tx) => tx.LockRowsAsync<int>(null!, null, RowLockClause.ForUpdate)),
        ["empty sql"] = new(typeof(ArgumentException), "The SQL is empty.", (_, tx) => tx.LockRowsAsync<int>("", null, RowLockClause.ForUpdate)),
        ["whitespace sql"] = new(typeof(ArgumentException), "The SQL is empty.", (_, tx) => tx.LockRowsAsync<int>(" \t\n", null, RowLockClause.ForUpdate)),
        ["existing FOR UPDATE"] = new(typeof(ArgumentException), "The SQL already has a locking clause", (_, tx) => tx.LockRowsAsync<int>("SELECT v FROM sentinel FOR UPDATE", null, RowLockClause.ForUpdate)),
        ["existing FOR SHARE"] = new(typeof(ArgumentException), "The SQL already has a locking clause", (_, tx) => tx.ClaimRowsAsync<int>("SELECT v FROM sentinel FOR SHARE", null, 1)),
        ["several statements"] = new(typeof(ArgumentException), "The SQL holds several statements.", (_, tx) => tx.LockRowsAsync<int>("SELECT v FROM sentinel; DELETE FROM sentinel", null, RowLockClause.ForUpdate)),
        ["trailing semicolon"] = new(typeof(ArgumentException), "Remove the trailing ';'", (_, tx) => tx.LockRowsAsync<int>("SELECT v FROM sentinel;", null, RowLockClause.ForUpdate)),
        ["comment hiding the clause"] = new(typeof(ArgumentException), "The SQL has an unterminated /* comment", (_, tx) => tx.LockRowsAsync<int>("SELECT v FROM sentinel /*", null, RowLockClause.ForUpdate)),
        ["table with quote"] = new(typeof(PostgresException), "42P01: relation \"sentinel\"; DELETE FROM sentinel; --\" does not exist", (_, tx) => tx.LockRowsByKeyAsync<int, int>("sentinel\"; DELETE FROM sentinel; --", "id", [1], RowLockClause.ForUpdate)),
        ["table with semicolon"] = new(typeof(PostgresException), "42P01: relation \"sentinel; DELETE FROM sentinel\" does not exist", (_, tx) => tx.LockRowsByKeyAsync<int, int>("sentinel; DELETE FROM sentinel", "id", [1], RowLockClause.ForUpdate)),
        ["column with comment dashes"] = new(typeof(PostgresException), "42703: column \"id -- \" does not exist", (_, tx) => tx.LockRowsByKeyAsync<int, int>("sentinel", "id -- ", [1], RowLockClause.ForUpdate)),
        ["of table with block comment"] = new(typeof(ArgumentException), "RowLockClause.Of names no table the clause can lock", (_, tx) => tx.LockRowsAsync<int>("SELECT v FROM sentinel", null, RowLockClause.ForUpdate.Of("sentinel /*"))),
        ["of list with a block comment name"] = new(typeof(PostgresException), "42P01: relation \"sentinel /*\" in FOR UPDATE clause not found in FROM clause", (_, tx) => tx.LockRowsAsync<int>("SELECT v FROM sentinel", null, RowLockClause.ForUpdate.Of("sentinel", "sentinel /*"))),
        ["table with NUL"] = new(typeof(ArgumentException), "An identifier cannot contain a NUL character.", (_, tx) => tx.LockRowsByKeyAsync<int, int>("senti\0nel", "id", [1], RowLockClause.ForUpdate)),
        ["table of 64 bytes"] = new(typeof(ArgumentException), "The identifier '" + new string('t', 64) + "' is longer than PostgreSQL's limit of 63 bytes", (_, tx) => tx.LockRowsByKeyAsync<int, int>(new string('t', 64), "id", [1], RowLockClause.ForUpdate)),
        ["empty key list"] = new(typeof(ArgumentException), "Pass at least one key to lock.", (_, tx) => tx.LockRowsByKeyAsync<int, int>("sentinel", "id", [], RowLockClause.ForUpdate)),
        ["null advisory name"] = new(typeof(ArgumentNullException), "Value cannot be null. (Parameter 'name')", (_, tx) => tx.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromName(null!))),
        ["empty advisory name"] = new(typeof(ArgumentException), "The value cannot be an empty string. (Parameter 'name')", (_, tx) => tx.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromName(""))),
        ["negative lock timeout"] = new(typeof(ArgumentOutOfRangeException), "The lock timeout must be positive.", (_, tx) => tx.LockRowsAsync<int>("SELECT v FROM sentinel", null, RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromSeconds(-1)))),
        ["negative advisory lock timeout"] = new(typeof(ArgumentOutOfRangeException), "The timeout cannot be negative.", (_, tx) => tx.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromInt64(1), TimeSpan.FromSeconds(-2))),
        ["infinite row lock timeout"] = new(typeof(ArgumentOutOfRangeException), "An infinite timeout is not a timeout", (_, tx) => tx.LockRowsAsync<int>("SELECT v FROM sentinel", null, RowLockClause.ForUpdate.WithTimeout(Timeout.InfiniteTimeSpan))),
        ["negative session timeout"] = new(typeof(ArgumentOutOfRangeException), "The timeout cannot be negative.", (f, _) => f.DataSource.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromInt64(1), TimeSpan.FromSeconds(-5))),
        ["limit 0"] = new(typeof(ArgumentOutOfRangeException), "limit ('0') must be greater than or equal to '1'.", (_, tx) => tx.ClaimRowsAsync<int>("SELECT v FROM sentinel", null, 0)),
        ["negative limit"] = new(typeof(ArgumentOutOfRangeException), "limit ('-7') must be greater than or equal to '1'.", (_, tx) => tx.ClaimRowsAsync<int>("SELECT v FROM sentinel", null, -7)),
        ["null work"] = new(typeof(ArgumentNullException), "Value cannot be null. (Parameter 'work')", (f, _) => new TransactionRunner(f.DataSource).RunAsync(null!)),
        ["disposed data source"] = new(typeof(ObjectDisposedException), "Cannot access a disposed object.", async (f, _) =>
        {
            var disposed = f.CreateDataSource(_ => { });
            await disposed.DisposeAsync();
            await disposed.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromInt64(1));
        }),
        ["completed transaction"] = new(typeof(InvalidOperationException), "The transaction is already committed or rolled back.", async (f, _) =>
        {
            await using var connection = await f.DataSource.OpenConnectionAsync();
            var done = await connection.BeginTransactionAsync();
            await done.RollbackAsync();
            await done.LockRowsAsync<int>("SELECT v FROM sentinel", null, RowLockClause.ForUpdate);
        }),
        ["transaction whose connection was closed"] = new(typeof(InvalidOperationException), "The transaction", async (f, _) =>
        {
            var connection = await f.DataSource.OpenConnectionAsync();
            var orphan = await connection.BeginTransactionAsync();
            await connection.CloseAsync();
            await orphan.LockRowsAsync<int>("SELECT v FROM sentinel", null, RowLockClause.ForUpdate);
        }),
        ["nested runner"] = new(typeof(InvalidOperationException), "RunAsync was called inside the work of another RunAsync.", (f, _) =>
        {
            var runner = new TransactionRunner(f.DataSource);
            return runner.RunAsync((tx, ct) => runner.RunAsync((_, _) => Task.CompletedTask, ct));
        }),
        ["retry attempts out of range"] = new(typeof(ValidationException), "The 'RowLockRetryStrategyOptions' are invalid.", (f, _) =>
        {
            var options = new TransactionRunnerOptions();
            options.Retry.MaxRetryAttempts = -1;
            GC.KeepAlive(new TransactionRunner(f.DataSource, options));
            return Task.CompletedTask;
        }),
    };

    public static TheoryData<string> Names => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(Names))]
    public async Task Bad_input_gets_a_clear_exception_and_changes_nothing(string name)
    {
        await db.ExecuteAsync("CREATE TABLE IF NOT EXISTS sentinel (id int PRIMARY KEY, v int NOT NULL); INSERT INTO sentinel VALUES (1, 10), (2, 20) ON CONFLICT DO NOTHING;");
        var before = await StateAsync();

        var @case = Cases[name];
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Record.ExceptionAsync(() => @case.Act(db, tx));

        Assert.NotNull(error);
        Assert.IsType(@case.Exception, error, exactMatch: false);
        Assert.StartsWith(@case.Message, error.Message, StringComparison.Ordinal);
        await tx.RollbackAsync();
        Assert.Equal(before, await StateAsync());
    }

    private async Task<string> StateAsync()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        var rows = await connection.QueryAsync<string>("SELECT id || '=' || v FROM sentinel ORDER BY id");
        var tables = await connection.QueryAsync<string>("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
        var locks = await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.datname = current_database() AND l.locktype = 'advisory'");
        return string.Join(",", rows) + "|" + string.Join(",", tables) + "|" + locks;
    }
}
