using RowLock.TestServer;

await using var server = await PostgresServer.StartAsync(new PostgresServerOptions
{
    ConnectionStringVariables = ["ROWLOCK_BENCH_CONNECTION", "ROWLOCK_TEST_CONNECTION"],
    FastUnsafeSettings = false,
    Log = Console.Error.WriteLine,
});
Console.WriteLine($"Benchmarks: not written yet. Server: {server.Description}");
