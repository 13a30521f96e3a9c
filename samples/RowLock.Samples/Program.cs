using Npgsql;
using RowLock.TestServer;

// Finds or starts a PostgreSQL server the same way the tests do, and prints its version.
string? connection = null;
for (var i = 0; i < args.Length - 1; i++)
{
    if (args[i] == "--connection")
    {
        connection = args[i + 1];
    }
}

await using var server = await PostgresServer.StartAsync(new PostgresServerOptions
{
    ConnectionString = connection,
    ConnectionStringVariables = ["ROWLOCK_CONNECTION"],
    Log = Console.Error.WriteLine,
});
await using var dataSource = NpgsqlDataSource.Create(server.ConnectionString);
await using var command = dataSource.CreateCommand("SELECT version()");
Console.WriteLine($"Connected to {server.Description}: {await command.ExecuteScalarAsync()}");
