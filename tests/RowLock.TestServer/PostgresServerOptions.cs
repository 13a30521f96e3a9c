namespace RowLock.TestServer;

/// <summary>How <see cref="PostgresServer.StartAsync"/> looks for a server.</summary>
public sealed class PostgresServerOptions
{
    /// <summary>Environment variables that may hold a connection string, checked in order.</summary>
    public IReadOnlyList<string> ConnectionStringVariables { get; init; } = ["ROWLOCK_TEST_CONNECTION"];

    /// <summary>A connection string given explicitly (for example on a command line); wins over the variables.</summary>
    public string? ConnectionString { get; init; }

    /// <summary>
    /// Trade durability for speed on throwaway servers (<c>fsync=off</c>, <c>synchronous_commit=off</c>).
    /// Benchmarks keep this off so that they measure a server configured like production.
    /// </summary>
    public bool FastUnsafeSettings { get; init; } = true;

    /// <summary>Start a private cluster from local binaries even when a connection string or Docker is available (for tests that restart it).</summary>
    public bool PreferLocalCluster { get; init; }

    /// <summary>Receives one line per step (which server was found, started, stopped).</summary>
    public Action<string>? Log { get; init; }
}
