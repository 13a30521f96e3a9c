namespace RowLock.TestServer;

/// <summary>Where the PostgreSQL server used by tests, samples and benchmarks comes from.</summary>
public enum PostgresServerKind
{
    /// <summary>A server named by a connection string (an environment variable or a command-line option).</summary>
    External,

    /// <summary>A throwaway container started through Testcontainers.</summary>
    Container,

    /// <summary>A throwaway cluster started from the PostgreSQL binaries installed on this machine.</summary>
    LocalCluster,
}
