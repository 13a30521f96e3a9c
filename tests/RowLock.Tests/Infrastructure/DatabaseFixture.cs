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
