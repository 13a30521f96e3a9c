using System.Globalization;
using System.Text;
using Npgsql;
using RowLock.Benchmarks;
using RowLock.TestServer;

// RowLock benchmarks: every comparison runs both sides in this process, on the same server, in the same run, alternating.
// Usage: dotnet run -c Release --project tests/RowLock.Benchmarks -- [--quick] [--only overhead|hot-row|queue|advisory|ef|savepoint|semaphore|overhead-profile] [--out PATH]
var quick = args.Contains("--quick");
var only = Option("--only");
var output = Option("--out") ?? Path.Combine(RepositoryRoot(), "docs", "benchmarks.md");

await using var server = await PostgresServer.StartAsync(new PostgresServerOptions
{
    ConnectionStringVariables = ["ROWLOCK_BENCH_CONNECTION", "ROWLOCK_TEST_CONNECTION"],
    FastUnsafeSettings = false, // measure a server configured like production: fsync and synchronous_commit on
    Log = Console.Error.WriteLine,
});
var database = await server.CreateDatabaseAsync("bench");
var connectionString = new NpgsqlConnectionStringBuilder(database) { MaxPoolSize = 64, NoResetOnClose = false }.ConnectionString;
await using var dataSource = NpgsqlDataSource.Create(connectionString);
var context = new BenchContext(dataSource, connectionString, quick);
var version = await context.ScalarAsync<string>("SHOW server_version");

var report = new StringBuilder();
report.AppendLine("# RowLock benchmarks");
report.AppendLine();
report.AppendLine(CultureInfo.InvariantCulture, $"- date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
report.AppendLine(CultureInfo.InvariantCulture, $"- machine: {Environment.ProcessorCount} cores, {Environment.OSVersion}, .NET {Environment.Version}");
report.AppendLine(CultureInfo.InvariantCulture, $"- server: PostgreSQL {version}, {server.Description} (default fsync and synchronous_commit)");
report.AppendLine(CultureInfo.InvariantCulture, $"- command: `dotnet run -c Release --project tests/RowLock.Benchmarks{(quick ? " -- --quick" : "")}`");
report.AppendLine();

(string Key, string Title, Func<BenchContext, Task<string>> Run)[] benchmarks =
[
    ("overhead", "1. Overhead, uncontended (and 5. allocations)", OverheadBenchmark.RunAsync),
    ("hot-row", "2. Hot row under contention", HotRowBenchmark.RunAsync),
    ("queue", "3. Queue: SKIP LOCKED claims against plain FOR UPDATE (and 5. allocations)", QueueBenchmark.RunAsync),
    ("advisory", "4. Advisory locks", AdvisoryBenchmark.RunAsync),
    ("ef", "6. EF Core: WithRowLock against FromSql with a hand-written FOR UPDATE", EfBenchmark.RunAsync),
    ("savepoint", "7. Savepoints (subtransactions): N NOWAIT locks one by one while 16 readers run", SavepointBenchmark.RunAsync),
    ("semaphore", "8. Semaphores: at most 4 holders, 16 contenders", SemaphoreBenchmark.RunAsync),
    ("overhead-profile", "Overhead profile: lock-update-commit one layer at a time", OverheadProfile.RunAsync),
];
foreach (var (key, title, run) in benchmarks.Where(b => only is null ? b.Key != "overhead-profile" : b.Key == only))
{
    Console.Error.WriteLine($"Running {title} ...");
    report.AppendLine(CultureInfo.InvariantCulture, $"## {title}");
    report.AppendLine();
    report.AppendLine(await run(context));
}

await dataSource.DisposeAsync();
await server.DropDatabaseAsync(database);
Directory.CreateDirectory(Path.GetDirectoryName(output)!);
await File.WriteAllTextAsync(output, report.ToString());
Console.WriteLine(report);
Console.Error.WriteLine($"Written to {output}");

string? Option(string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

static string RepositoryRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "RowLock.sln")))
        {
            return dir.FullName;
        }
    }

    return Directory.GetCurrentDirectory();
}
