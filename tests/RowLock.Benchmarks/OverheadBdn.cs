using System.Globalization;
using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>
/// Table 1 again, measured by BenchmarkDotNet with its MemoryDiagnoser: the same five lock-update-commit operations
/// as <see cref="OverheadBenchmark"/>, in this process (in-process toolchain: the PostgreSQL server and the data source
/// are this run's), with BenchmarkDotNet's short job (1 launch, 3 warm-up and 3 measured iterations of about 0.5 s).
/// </summary>
internal static class OverheadBdn
{
    public static Task<string> RunAsync(BenchContext context) => Task.Run(async () =>
    {
        await context.ExecuteAsync("DROP TABLE IF EXISTS bench_row; CREATE TABLE bench_row (id int PRIMARY KEY, v int NOT NULL); INSERT INTO bench_row VALUES (1, 0);");
        OverheadBdnBenchmarks.DataSource = context.DataSource;
        var job = Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance);
        var config = ManualConfig.CreateEmpty()
            .AddJob(job)
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumnProvider(DefaultColumnProviders.Instance)
            .AddLogger(new StandardErrorLogger())
            .WithArtifactsPath(Path.Combine(Path.GetTempPath(), "rowlock-bdn-" + Environment.ProcessId));
        var summary = BenchmarkRunner.Run<OverheadBdnBenchmarks>(config);

        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"BenchmarkDotNet {typeof(BenchmarkRunner).Assembly.GetName().Version}, job `ShortRun` (also with --quick) with the in-process emit toolchain, MemoryDiagnoser; {summary.TotalTime.TotalSeconds:F0} s for the five. Same operations, same server, same data source as table 1; one connection, no contention.");
        text.AppendLine();
        text.AppendLine("| side | mean µs/op | median µs/op | median ratio to hand-written | allocated bytes/op | allocation ratio | Gen0 per 1000 ops |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        var reports = summary.Reports;
        var baseline = reports.FirstOrDefault(r => r.BenchmarkCase.Descriptor.Baseline);
        double? baselineMedian = baseline?.ResultStatistics?.Median;
        long? baselineBytes = baseline?.GcStats.GetBytesAllocatedPerOperation(baseline.BenchmarkCase);
        foreach (var report in reports)
        {
            var name = report.BenchmarkCase.Descriptor.WorkloadMethodDisplayInfo.Trim('\'');
            var stats = report.ResultStatistics;
            var bytes = report.GcStats.GetBytesAllocatedPerOperation(report.BenchmarkCase);
            var gen0 = report.GcStats.TotalOperations > 0 ? report.GcStats.Gen0Collections * 1000.0 / report.GcStats.TotalOperations : double.NaN;
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {name} | {(stats?.Mean ?? double.NaN) / 1000:F0} | {(stats?.Median ?? double.NaN) / 1000:F0} | {(stats?.Median ?? double.NaN) / (baselineMedian ?? double.NaN):F3} | {bytes:N0} | {(double)(bytes ?? 0) / (baselineBytes ?? 1):F2} | {gen0:F2} |");
        }

        if (summary.HasCriticalValidationErrors || reports.Length == 0)
        {
            text.AppendLine();
            text.AppendLine("BenchmarkDotNet did not run: " + string.Join("; ", summary.ValidationErrors.Select(e => e.Message)));
        }

        return text.ToString();
    });

    /// <summary>BenchmarkDotNet's log goes to stderr, with the other progress lines; stdout carries the report.</summary>
    private sealed class StandardErrorLogger : ILogger
    {
        public string Id => nameof(StandardErrorLogger);

        public int Priority => 0;

        public void Write(LogKind logKind, string text) => Console.Error.Write(text);

        public void WriteLine() => Console.Error.WriteLine();

        public void WriteLine(LogKind logKind, string text) => Console.Error.WriteLine(text);

        public void Flush() => Console.Error.Flush();
    }
}

/// <summary>The five operations of table 1 as BenchmarkDotNet benchmarks (public: BenchmarkDotNet emits code that calls them).</summary>
[MemoryDiagnoser]
public class OverheadBdnBenchmarks
{
    private Func<Task> _hand = null!;
    private Func<Task> _helper = null!;
    private Func<Task> _runner = null!;
    private Func<Task> _runnerDeferred = null!;
    private Func<Task> _helperCommitted = null!;

    internal static NpgsqlDataSource? DataSource { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var dataSource = DataSource ?? throw new InvalidOperationException("run through the benchmark program: --only overhead-bdn");
        _hand = OverheadBenchmark.Hand(dataSource);
        _helper = OverheadBenchmark.Helper(dataSource);
        _runner = OverheadBenchmark.Runner(dataSource);
        _runnerDeferred = OverheadBenchmark.RunnerDeferred(dataSource);
        _helperCommitted = OverheadBenchmark.HelperCommitted(dataSource);
    }

    [Benchmark(Baseline = true, Description = "hand-written Npgsql")]
    public Task HandWritten() => _hand();

    [Benchmark(Description = "RowLock LockRowsAsync")]
    public Task LockRowsAsync() => _helper();

    [Benchmark(Description = "RowLock TransactionRunner")]
    public Task Runner() => _runner();

    [Benchmark(Description = "RowLock TransactionRunner, update deferred to COMMIT")]
    public Task RunnerDeferred() => _runnerDeferred();

    [Benchmark(Description = "RowLock LockRowsAsync + ExecuteAndCommitAsync")]
    public Task LockRowsAndCommit() => _helperCommitted();
}
