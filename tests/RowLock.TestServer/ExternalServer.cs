using Npgsql;

namespace RowLock.TestServer;

internal sealed class ExternalServer : PostgresServer
{
    private ExternalServer(string connectionString, string description)
        : base(connectionString, PostgresServerKind.External, description)
    {
    }

    public static async Task<PostgresServer> ConnectAsync(string connectionString, string source, CancellationToken cancellationToken)
    {
        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (ArgumentException e)
        {
            throw new InvalidOperationException($"{source} does not hold a valid Npgsql connection string: {e.Message}", e);
        }

        // Fail in seconds, not after the default 15 s per host, when the server is unreachable.
        if (builder.Timeout is 0 or > 10)
        {
            builder.Timeout = 10;
        }

        try
        {
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            return new ExternalServer(builder.ConnectionString, $"external server {builder.Host}:{builder.Port} (PostgreSQL {connection.PostgreSqlVersion}) from {source}");
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or System.Net.Sockets.SocketException)
        {
            throw new InvalidOperationException(
                $"{source} names a PostgreSQL server that cannot be reached ({builder.Host}:{builder.Port}): {e.Message}. " +
                $"Fix or unset {source}; when it is unset, a Docker engine or local PostgreSQL binaries are used instead.", e);
        }
    }

    public override ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
