using System.Globalization;
using System.Text;
using Npgsql;
using RowLock.Samples.Ef;
using RowLock.Samples.Scenarios;

namespace RowLock.Samples.Lab;

/// <summary>Runs scenarios and prints the comparison table.</summary>
public static class LabRunner
{
    /// <summary>Every scenario, in the order docs/lab.md presents them.</summary>
    public static IReadOnlyList<Scenario> All { get; } =
        [new HotRecord(), new FifoStock(), new EditConflict(), new CronBatch(), new OneTimeJob(), new DeadlockRetry(), new PresenceHeartbeat(), new LeaderJob()];

    /// <summary>
    /// The EF Core variant (<c>--ef</c>): the scenarios whose RowLock side has an EF form, both sides written with a
    /// DbContext (naive: load, change, SaveChanges; RowLock: WithRowLock / ClaimRowsAsync / advisory lock in
    /// DbContextTransactionRunner). Same names, tables and verdicts as <see cref="All"/>.
    /// </summary>
    public static IReadOnlyList<Scenario> Ef { get; } =
        [new EfHotRecord(), new EfFifoStock(), new EfEditConflict(), new EfCronBatch(), new EfOneTimeJob()];

    /// <summary>Scenarios of <see cref="All"/> that <c>--ef</c> skips, and why.</summary>
    public static IReadOnlyDictionary<string, string> WithoutEfForm { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["deadlock-retry"] = "no EF form in the lab (DbContextTransactionRunner shares the core runner's retry loop)",
        ["presence-heartbeat"] = "no EF form in the lab (its SKIP LOCKED claim is the one cron-batch shows)",
        ["leader-job"] = "no EF form in the lab (the fence is a statement in the transaction, whatever writes the rest)",
    };

    /// <summary>Runs the scenarios one after another, reporting a line of progress per scenario.</summary>
    public static async Task<IReadOnlyList<ScenarioResult>> RunAsync(NpgsqlDataSource dataSource, IEnumerable<Scenario> scenarios, LabOptions options,
        TextWriter? progress, CancellationToken cancellationToken)
    {
        var results = new List<ScenarioResult>();
        var list = scenarios.ToList();
        for (var i = 0; i < list.Count; i++)
        {
            progress?.Write($"[{i + 1}/{list.Count}] {list[i].Name} ({options.Workers} workers) ... ");
            var result = await list[i].RunAsync(dataSource, options, cancellationToken);
            progress?.WriteLine(result.RowLock.Succeeded ? "RowLock invariant holds, no error surfaced" : "ROWLOCK SIDE FAILED");
            results.Add(result);
        }

        return results;
    }

    /// <summary>The results as a Markdown table.</summary>
    public static string Format(IReadOnlyList<ScenarioResult> results)
    {
        static string Ms(TimeSpan t) => t.TotalMilliseconds.ToString("N0", CultureInfo.InvariantCulture) + " ms";
        static string Inv(SideResult s) => (s.InvariantHolds ? "ok: " : "BROKEN: ") + s.Detail;
        static string Errors(SideResult s) => 
            s.ErrorKinds.Length == 0 ? s.ErrorsSurfaced.ToString(CultureInfo.InvariantCulture) : string.Create(CultureInfo.InvariantCulture, $"{s.ErrorsSurfaced} ({s.ErrorKinds})");

        var table = new StringBuilder();
        table.AppendLine("| scenario | workers | naive: errors | naive: invariant | naive: time | RowLock: errors | RowLock: retries | RowLock: invariant | RowLock: time |");
        table.AppendLine("|---|---:|---:|---|---:|---:|---:|---|---:|");
        foreach (var r in results)
        {
            table.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Name} | {r.Workers} | {Errors(r.Naive)} | {Inv(r.Naive)} | {Ms(r.Naive.Elapsed)} | {Errors(r.RowLock)} | {r.RowLock.Retries} | {Inv(r.RowLock)} | {Ms(r.RowLock.Elapsed)} |");
        }

        return table.ToString();
    }
}
