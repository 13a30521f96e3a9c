using RowLock.TestServer;

namespace RowLock.Tests.Infrastructure;

/// <summary>One PostgreSQL server for the whole test run, started on first use and removed when the process exits.</summary>
public static class SharedServer
{
    private static readonly Lazy<Task<PostgresServer>> Server = new(() => PostgresServer.StartAsync(new PostgresServerOptions
    {
        ConnectionStringVariables = ["ROWLOCK_TEST_CONNECTION"],
        Log = Console.Error.WriteLine,
    }));

    public static Task<PostgresServer> GetAsync() => Server.Value;
}
