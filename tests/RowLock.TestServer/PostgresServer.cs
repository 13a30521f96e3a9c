using System.Globalization;
using Npgsql;

namespace RowLock.TestServer;

/// <summary>
/// A PostgreSQL server for tests, samples and benchmarks, found in this order: a connection string
/// (<see cref="PostgresServerOptions.ConnectionString"/> or an environment variable), a Testcontainers
/// container when a Docker engine answers, a throwaway cluster from local binaries. Throwaway servers are
/// removed on <see cref="DisposeAsync"/>, and by a watchdog if the process dies first.
/// </summary>
public abstract class PostgresServer : IAsyncDisposable
{
    private protected PostgresServer(string connectionString, PostgresServerKind kind, string description)
    {
        ConnectionString = connectionString;
        Kind = kind;
        Description = description;
    }

    /// <summary>A connection string to the server's maintenance database, as a superuser where the server is ours.</summary>
    public string ConnectionString { get; }

    /// <summary>Where the server came from.</summary>
    public PostgresServerKind Kind { get; }

    /// <summary>One line for humans: kind, version or address.</summary>
    public string Description { get; }

    /// <summary>True when this machine has PostgreSQL server binaries, so a private cluster can be started (and restarted).</summary>
    public static bool LocalBinariesAvailable => LocalBinaries.Find() is not null;

    /// <summary>True when <see cref="RestartAsync"/> can stop and start the server.</summary>
    public virtual bool CanRestart => false;

    /// <summary>Finds or starts a server; throws <see cref="InvalidOperationException"/> saying how to get one when none can be had.</summary>
    public static async Task<PostgresServer> StartAsync(PostgresServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new PostgresServerOptions();
        var log = options.Log ?? (_ => { });

        var (source, connectionString) = options.PreferLocalCluster ? ("", null) : FindConnectionString(options);
        if (connectionString is not null)
        {
            log($"Using the server named by {source}.");
            return await ExternalServer.ConnectAsync(connectionString, source, cancellationToken).ConfigureAwait(false);
        }

        if (!options.PreferLocalCluster && await DockerProbe.EngineAnswersAsync(cancellationToken).ConfigureAwait(false))
        {
            log("A Docker engine answers: starting PostgreSQL with Testcontainers.");
            return await ContainerServer.StartAsync(cancellationToken).ConfigureAwait(false);
        }

        var binaries = LocalBinaries.Find();
        if (binaries is not null && options.PreferLocalCluster)
        {
            log($"Starting a private throwaway cluster from {binaries}.");
            return await LocalClusterServer.StartAsync(binaries, options.FastUnsafeSettings, log, cancellationToken).ConfigureAwait(false);
        }

        if (binaries is not null)
        {
            log($"No connection string and no Docker engine: starting a throwaway cluster from {binaries}.");
            return await LocalClusterServer.StartAsync(binaries, options.FastUnsafeSettings, log, cancellationToken).ConfigureAwait(false);
        }

        var variables = string.Join(" or ", options.ConnectionStringVariables);
        throw new InvalidOperationException(
            "No PostgreSQL server is available. Do one of: set " + variables +
            " to a connection string (e.g. \"Host=localhost;Username=postgres;Password=...\") of a server where the user may CREATE DATABASE; " +
            "start a Docker engine (Testcontainers will run postgres:15); or install the PostgreSQL server binaries " +
            "(Debian/Ubuntu: apt-get install postgresql, which puts them in /usr/lib/postgresql/<version>/bin, or put pg_ctl on PATH).");
    }

    /// <summary>Creates a new, empty database and returns a connection string to it.</summary>
    /// <param name="prefix">Readable part of the name (e.g. the test class); sanitised and made unique.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    public async Task<string> CreateDatabaseAsync(string prefix, CancellationToken cancellationToken = default)
    {
        var name = DatabaseName(prefix);
        await using (var connection = new NpgsqlConnection(ConnectionString))
        {
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            await using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        return new NpgsqlConnectionStringBuilder(ConnectionString) { Database = name }.ConnectionString;
    }

    /// <summary>Drops a database made by <see cref="CreateDatabaseAsync"/>, disconnecting whoever is still in it.</summary>
    public async Task DropDatabaseAsync(string connectionString, CancellationToken cancellationToken = default)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database;
        if (string.IsNullOrEmpty(name) || !name.StartsWith("rl_", StringComparison.Ordinal))
        {
            throw new ArgumentException("Only databases made by CreateDatabaseAsync can be dropped.", nameof(connectionString));
        }

        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Stops the server and starts it again on the same port (throwaway clusters only).</summary>
    /// <param name="downtime">How long the server stays down before it starts again.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    public virtual Task RestartAsync(TimeSpan downtime, CancellationToken cancellationToken = default)
        => throw new NotSupportedException($"A server of kind {Kind} cannot be restarted by the tests.");

    /// <summary>Stops and removes the server when it is a throwaway one.</summary>
    public abstract ValueTask DisposeAsync();

    private static (string Source, string? ConnectionString) FindConnectionString(PostgresServerOptions options)
    {
        if (!string.IsNullOrWhiteSpace(options.ConnectionString))
        {
            return ("the --connection option", options.ConnectionString);
        }

        foreach (var variable in options.ConnectionStringVariables)
        {
            var value = Environment.GetEnvironmentVariable(variable);
            if (!string.IsNullOrWhiteSpace(value))
            {
                return (variable, value);
            }
        }

        return ("", null);
    }

    private static string DatabaseName(string prefix)
    {
        var readable = new string(prefix.ToLowerInvariant().Where(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '_').ToArray());
        if (readable.Length > 40)
        {
            readable = readable[..40];
        }

        return string.Create(CultureInfo.InvariantCulture, $"rl_{readable}_{Random.Shared.Next():x8}");
    }
}
