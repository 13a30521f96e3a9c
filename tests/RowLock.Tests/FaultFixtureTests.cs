using System.Net.Sockets;
using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;
using RowLock.TestServer;

namespace RowLock.Tests;

/// <summary>Proofs that the failover pair really replicates synchronously and really fails over.</summary>
[Collection(ReplicatedPairCollection.Name)]
public sealed class ReplicatedPairFixtureTests
{
    [ReplicatedPairFact]
    public async Task The_standby_streams_synchronously_and_an_acknowledged_commit_survives_the_primarys_death()
    {
        var pair = await SharedReplicatedPair.GetWithStandbyAsync();
        await using (var primary = await OpenUnpooledAsync(pair.PrimaryConnectionString))
        {
            Assert.Equal(1L, await primary.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'"));
            Assert.False(await primary.ExecuteScalarAsync<bool>("SELECT pg_is_in_recovery()"));
        }

        await using (var standby = await OpenUnpooledAsync(pair.StandbyConnectionString))
        {
            Assert.True(await standby.ExecuteScalarAsync<bool>("SELECT pg_is_in_recovery()"));
            var readOnly = await Assert.ThrowsAsync<PostgresException>(() => standby.ExecuteAsync("CREATE TABLE nope (x int)"));
            Assert.Equal(PostgresErrorCodes.ReadOnlySqlTransaction, readOnly.SqlState);
        }

        var database = await pair.CreateDatabaseAsync("fixture");
        await using var dataSource = NpgsqlDataSource.Create(database);
        int portBefore;
        await using (var connection = await dataSource.OpenConnectionAsync())
        {
            portBefore = await connection.ExecuteScalarAsync<int>("SELECT inet_server_port()");
            await connection.ExecuteAsync("CREATE TABLE acknowledged (id int PRIMARY KEY); INSERT INTO acknowledged SELECT generate_series(1, 100)");
        }

        var oldPrimary = pair.PrimaryPort;
        Assert.Equal(oldPrimary, portBefore);

        // The kill comes right after the acknowledgement: only synchronous replication can have put the rows on the standby.
        await pair.FailOverAsync();

        Assert.False(pair.HasStandby);
        Assert.NotEqual(oldPrimary, pair.PrimaryPort);
        await using (var connection = await OpenUnpooledAsync(database))
        {
            Assert.Equal(pair.PrimaryPort, await connection.ExecuteScalarAsync<int>("SELECT inet_server_port()"));
            Assert.False(await connection.ExecuteScalarAsync<bool>("SELECT pg_is_in_recovery()"));
            Assert.Equal(100L, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM acknowledged"));
            await connection.ExecuteAsync("INSERT INTO acknowledged VALUES (101)"); // writable, and no standby to wait for
        }

        await pair.RebuildStandbyAsync();
        Assert.True(pair.HasStandby);
        Assert.Equal(oldPrimary, pair.StandbyPort);
        await using (var primary = await OpenUnpooledAsync(pair.PrimaryConnectionString))
        {
            Assert.Equal(1L, await primary.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'"));
        }
    }

    private static async Task<NpgsqlConnection> OpenUnpooledAsync(string connectionString)
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }
}

/// <summary>Proofs that the fault proxy forwards, goes silent without closing anything, and resets.</summary>
public sealed class FaultProxyTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task Forwarding_carries_queries_and_counts_round_trips()
    {
        await using var proxy = FaultProxy.For(db.ConnectionString);
        await using var connection = new NpgsqlConnection(Unpooled(proxy.ConnectionStringFor(db.ConnectionString)));
        await connection.OpenAsync();
        var before = proxy.RoundTrips;
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT 1"));
        Assert.Equal(2, await connection.ExecuteScalarAsync<int>("SELECT 2"));
        Assert.Equal(before + 2, proxy.RoundTrips);
        Assert.Equal(1, proxy.OpenConnections);
    }

    [Fact]
    public async Task Going_silent_times_the_client_out_while_the_server_never_sees_the_connection_close()
    {
        await using var proxy = FaultProxy.For(db.ConnectionString);
        var name = "silent-" + Guid.NewGuid().ToString("N")[..8];
        var builder = new NpgsqlConnectionStringBuilder(Unpooled(proxy.ConnectionStringFor(db.ConnectionString)))
        {
            ApplicationName = name,
            CommandTimeout = 1,
            CancellationTimeout = -1,
            Timeout = 2, // also bounds the cancel request Npgsql sends after the timeout, which meets the same silence

        };
        await using var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();

        proxy.Mode = ProxyMode.Silent;
        var timedOut = await Assert.ThrowsAsync<NpgsqlException>(() => connection.ExecuteScalarAsync<int>("SELECT 1"));
        Assert.IsType<TimeoutException>(timedOut.InnerException);
        Assert.Equal(System.Data.ConnectionState.Broken, connection.FullState); // the client gave the connection up

        // Neither FIN nor RST went through: the server still has the session, idle.
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE application_name = @name", new { name }));

        // New connections get the same silence: the open times out.
        var builderForNew = new NpgsqlConnectionStringBuilder(builder.ConnectionString) { Timeout = 1 };
        await using var fresh = new NpgsqlConnection(builderForNew.ConnectionString);
        await Assert.ThrowsAnyAsync<NpgsqlException>(() => fresh.OpenAsync());

        proxy.Mode = ProxyMode.Forward;
        await using var healed = new NpgsqlConnection(Unpooled(proxy.ConnectionStringFor(db.ConnectionString)));
        await healed.OpenAsync();
        Assert.Equal(3, await healed.ExecuteScalarAsync<int>("SELECT 3"));
    }

    [Fact]
    public async Task Silencing_the_open_connections_leaves_new_ones_working()
    {
        await using var proxy = FaultProxy.For(db.ConnectionString);
        var builder = new NpgsqlConnectionStringBuilder(Unpooled(proxy.ConnectionStringFor(db.ConnectionString))) { CommandTimeout = 1, CancellationTimeout = -1 };
        await using var cut = new NpgsqlConnection(builder.ConnectionString);
        await cut.OpenAsync();
        Assert.Equal(1, proxy.SilenceOpenConnections());

        await Assert.ThrowsAsync<NpgsqlException>(() => cut.ExecuteScalarAsync<int>("SELECT 1"));
        await using var other = new NpgsqlConnection(builder.ConnectionString);
        await other.OpenAsync();
        Assert.Equal(2, await other.ExecuteScalarAsync<int>("SELECT 2"));
    }

    [Fact]
    public async Task Resetting_breaks_the_client_at_once_and_ends_the_servers_session()
    {
        await using var proxy = FaultProxy.For(db.ConnectionString);
        var name = "reset-" + Guid.NewGuid().ToString("N")[..8];
        var builder = new NpgsqlConnectionStringBuilder(Unpooled(proxy.ConnectionStringFor(db.ConnectionString))) { ApplicationName = name };
        await using var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE application_name = @name", new { name }));

        proxy.Mode = ProxyMode.Reset;
        var broken = await Assert.ThrowsAsync<NpgsqlException>(() => connection.ExecuteScalarAsync<int>("SELECT 1"));
        Assert.True(broken.InnerException is IOException or SocketException, broken.ToString());

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (await db.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE application_name = @name", new { name }) != 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the server kept the reset session for 30 s");
            await Task.Delay(20);
        }

        await using var refused = new NpgsqlConnection(builder.ConnectionString);
        await Assert.ThrowsAnyAsync<NpgsqlException>(() => refused.OpenAsync());
    }

    private static string Unpooled(string connectionString) => new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString;
}
