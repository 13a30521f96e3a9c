using Testcontainers.PostgreSql;

namespace RowLock.TestServer;

internal sealed class ContainerServer : PostgresServer
{
    private readonly PostgreSqlContainer _container;

    private ContainerServer(PostgreSqlContainer container)
        : base(container.GetConnectionString(), PostgresServerKind.Container, $"Testcontainers postgres:15 on port {container.GetMappedPublicPort(5432)}")
    {
        _container = container;
    }

    public static async Task<PostgresServer> StartAsync(CancellationToken cancellationToken)
    {
        var container = new PostgreSqlBuilder("postgres:15-alpine")
            .WithCommand("-c", "max_connections=300", "-c", "max_prepared_transactions=20", "-c", "fsync=off", "-c", "synchronous_commit=off")
            .Build();
        await container.StartAsync(cancellationToken).ConfigureAwait(false);
        return new ContainerServer(container);
    }

    public override ValueTask DisposeAsync() => _container.DisposeAsync();
}
