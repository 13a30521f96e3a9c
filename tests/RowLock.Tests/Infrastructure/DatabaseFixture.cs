using Npgsql;
using RowLock.TestServer;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// A fresh database for one test class (so classes run in parallel without seeing each other's tables),
/// with a pooled data source to it. Dropped when the class is done.
/// </summary>
public sealed class DatabaseFixture : IAsyncLifetime
{
    private NpgsqlDataSource? _dataSource;

    public PostgresServer Server { get; private set; } = null!;

    public string ConnectionString { get; private set; } = "";

    public NpgsqlDataSource DataSource => _dataSource ?? throw new InvalidOperationException("The fixture is not initialised.");

    public async Task InitializeAsync()
    {
        Server = await SharedServer.GetAsync();
        ConnectionString = await Server.CreateDatabaseAsync("t");
        _dataSource = NpgsqlDataSource.Create(ConnectionString);
    }

    /// <summary>A data source with extra connection-string settings (e.g. a small pool), owned by the caller.</summary>
    public NpgsqlDataSource CreateDataSource(Action<NpgsqlConnectionStringBuilder> configure)
    {
        var builder = new NpgsqlConnectionStringBuilder(ConnectionString);
        configure(builder);
        return NpgsqlDataSource.Create(builder.ConnectionString);
    }

    /// <summary>Creates a uniquely named table <c>(id int PRIMARY KEY, v int NOT NULL)</c> holding the row (1, 0): one hot row.</summary>
    public async Task<string> CreateHotRowTableAsync(string prefix)
    {
        var table = TestTables.Unique(prefix);
        await ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL); INSERT INTO {table} VALUES (1, 0);");
        return table;
    }

    /// <summary>How many sessions hold <paramref name="key"/> now (granted rows in pg_locks, any database).</summary>
    public Task<long> AdvisoryHoldersAsync(AdvisoryLockKey key)
    {
        var (classId, objId, objSubId) = key.PgLocksCoordinates;
        return ScalarAsync<long>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = @c::bigint::oid AND objid = @o::bigint::oid AND objsubid = @s",
            new { c = (long)classId, o = (long)objId, s = (short)objSubId });
    }

    /// <summary>
    /// A table whose COMMIT is slow: a deferred constraint trigger sleeps 30 s for each inserted row, so a test can act
    /// (kill the backend) while COMMIT is on the server.
    /// </summary>
    public async Task<string> CreateSlowCommitTableAsync(string prefix)
    {
        var table = prefix + "_" + Guid.NewGuid().ToString("N")[..8];
        await ExecuteAsync($"""
            CREATE TABLE {table} (id int);
            CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;
            CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_slow();
            """);
        return table;
    }

    /// <summary>Terminates the backend <paramref name="pid"/> and waits until it has exited (its locks released).</summary>
    public Task TerminateBackendAsync(int pid) => ExecuteAsync("SELECT pg_terminate_backend(@pid, 10000)", new { pid });

    /// <summary>
    /// Terminates the backend <paramref name="pid"/> gives (0: not known yet) once it sleeps in pg_sleep (a slow COMMIT
    /// or a slow statement of the test's making), on a task of its own.
    /// </summary>
    public Task TerminateWhenSleepingAsync(Func<int> pid) => Task.Run(async () =>
    {
        while (pid() == 0 || await ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE pid = @pid AND wait_event = 'PgSleep'", new { pid = pid() }) == 0)
        {
            await Task.Delay(20);
        }

        await TerminateBackendAsync(pid());
    });

    public async Task ExecuteAsync(string sql, object? param = null)
    {
        await using var connection = await DataSource.OpenConnectionAsync();
        await Dapper.SqlMapper.ExecuteAsync(connection, sql, param);
    }

    public async Task<T> ScalarAsync<T>(string sql, object? param = null)
    {
        await using var connection = await DataSource.OpenConnectionAsync();
        return await Dapper.SqlMapper.ExecuteScalarAsync<T>(connection, sql, param) ?? throw new InvalidOperationException("The query returned NULL.");
    }

    public async Task DisposeAsync()
    {
        if (_dataSource is not null)
        {
            await _dataSource.DisposeAsync();
            await Server.DropDatabaseAsync(ConnectionString);
        }
    }
}
