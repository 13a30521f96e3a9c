using System.Globalization;
using System.Text;
using Npgsql;
using RowLock.Benchmarks;
using RowLock.TestServer;

// RowLock benchmarks: every comparison runs both sides in this process, on the same server, in the same run, alternating.
const string Usage = """
    Usage: dotnet run -c Release --project tests/RowLock.Benchmarks -- [options]
      --quick          short runs (smoke test; numbers not for publishing)
      --only KEY       one benchmark: overhead|overhead-bdn|hot-row|queue|advisory|ef|savepoint|network|semaphore|overhead-profile
      --scale X        multiply the timed durations of hot-row and network (and the network FIFO's job count) by X
      --repeats N      alternating repeats of the hot-row, FIFO, savepoint and network comparisons (default 3, quick 1)
      --out PATH       where to write the report (default: docs/benchmarks.md for a full run; a --quick or --only
                       run is printed only, so a partial run never replaces the published report)
    """;
if (args is [DelayProxy.ChildArgument, var proxyHost, var proxyPort])
{
    await DelayProxy.RunChildAsync(proxyHost, int.Parse(proxyPort, CultureInfo.InvariantCulture));
    return;
}

if (args.Contains("--help"))
{
    Console.WriteLine(Usage);
    return;
}

var quick = args.Contains("--quick");
var only = Option("--only");
var scale = double.Parse(Option("--scale") ?? "1", CultureInfo.InvariantCulture);
int? repeats = Option("--repeats") is { } r ? int.Parse(r, CultureInfo.InvariantCulture) : null;
var output = Option("--out") ?? (quick || only is not null ? null : Path.Combine(RepositoryRoot(), "docs", "benchmarks.md"));

await using var server = await PostgresServer.StartAsync(new PostgresServerOptions
{
    ConnectionStringVariables = ["ROWLOCK_BENCH_CONNECTION", "ROWLOCK_TEST_CONNECTION"],
    FastUnsafeSettings = false, // measure a server configured like production: fsync and synchronous_commit on
    Log = Console.Error.WriteLine,
});
var database = await server.CreateDatabaseAsync("bench");
var connectionString = new NpgsqlConnectionStringBuilder(database) { MaxPoolSize = 64, NoResetOnClose = false }.ConnectionString;
await using var dataSource = NpgsqlDataSource.Create(connectionString);
var context = new BenchContext(dataSource, connectionString, quick, scale, repeats);
var version = await context.ScalarAsync<string>("SHOW server_version");

var report = new StringBuilder();
report.AppendLine("# RowLock benchmarks");
report.AppendLine();
report.AppendLine(CultureInfo.InvariantCulture, $"- date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
report.AppendLine(CultureInfo.InvariantCulture, $"- machine: {Environment.ProcessorCount} cores, {Environment.OSVersion}, .NET {Environment.Version}");
report.AppendLine(CultureInfo.InvariantCulture, $"- server: PostgreSQL {version}, {server.Description} (default fsync and synchronous_commit)");
report.AppendLine(CultureInfo.InvariantCulture, $"- load: 1-minute load average {LoadAverage()} at the start, {{END_LOAD}} at the end. The machine is shared: other builds and test runs ran beside this one, so CPU-bound numbers (µs/op, CPU per operation, direct throughput) are noisy; ratios of sides measured alternately in the same run are the figures to read.");
report.AppendLine(CultureInfo.InvariantCulture, $"- command: `dotnet run -c Release --project tests/RowLock.Benchmarks{(args.Length > 0 ? " -- " + string.Join(' ', args) : "")}`");
report.AppendLine();

(string Key, string Title, Func<BenchContext, Task<string>> Run)[] benchmarks =
[
    ("overhead", "1. Overhead, uncontended (and 5. allocations)", OverheadBenchmark.RunAsync),
    ("overhead-bdn", "1b. Overhead and allocations, uncontended, measured by BenchmarkDotNet", OverheadBdn.RunAsync),
    ("hot-row", "2. Hot row under contention", HotRowBenchmark.RunAsync),
    ("queue", "3. Queue: SKIP LOCKED claims against plain FOR UPDATE (and 5. allocations)", QueueBenchmark.RunAsync),
    ("advisory", "4. Advisory locks", AdvisoryBenchmark.RunAsync),
    ("ef", "6. EF Core: WithRowLock against FromSql with a hand-written FOR UPDATE", EfBenchmark.RunAsync),
    ("savepoint", "7. Savepoints (subtransactions): N NOWAIT locks one by one while 16 readers run", SavepointBenchmark.RunAsync),
    ("network", "8. Through a network: hot row and FIFO behind a delaying proxy (0.5 ms and 1.2 ms round trips)", NetworkBenchmark.RunAsync),
    ("semaphore", "9. Semaphores: at most 4 holders, 16 contenders", SemaphoreBenchmark.RunAsync),
    ("overhead-profile", "Overhead profile: lock-update-commit one layer at a time", OverheadProfile.RunAsync),
];
foreach (var (key, title, run) in benchmarks.Where(b => only is null ? b.Key != "overhead-profile" : b.Key == only))
{
    Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss} Running {title} ...");
    report.AppendLine(CultureInfo.InvariantCulture, $"## {title}");
    report.AppendLine();
    report.AppendLine(await run(context));
}

await dataSource.DisposeAsync();
await server.DropDatabaseAsync(database);
report.Replace("{END_LOAD}", LoadAverage());
Console.WriteLine(report);
if (output is not null)
{
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
    await File.WriteAllTextAsync(output, report.ToString());
    Console.Error.WriteLine($"Written to {output}");
}

string? Option(string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

static string LoadAverage() =>
    File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "n/a";

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
