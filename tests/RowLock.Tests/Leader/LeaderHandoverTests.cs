using System.Diagnostics;
using Npgsql;
using RowLock.Hosting;
using RowLock.Tests.Infrastructure;
using Xunit.Abstractions;

namespace RowLock.Tests.Leader;

/// <summary>
/// Eight candidates on two separate data sources (two pools, as two processes would have) hand leadership over again and
/// again: each leader resigns after two fenced rows and joins the queue again. Handovers: ROWLOCK_LEADER_HANDOVERS
/// (default 40; the longer run used 400).
/// </summary>
public sealed class LeaderHandoverTests(DatabaseFixture db, ITestOutputHelper output) : IClassFixture<DatabaseFixture>
{
    private static int Handovers =>
        int.TryParse(Environment.GetEnvironmentVariable("ROWLOCK_LEADER_HANDOVERS"), out var handovers) && handovers > 0 ? handovers : 40;

    [Fact]
    public async Task Eight_candidates_over_many_forced_handovers_never_overlap_by_epoch_and_leak_nothing()
    {
        var name = LeaderTestKit.UniqueName("handover");
        var log = await FencedLog.CreateAsync(db.DataSource, "fenced");
        var elections = new Elections();
        await using var first = NpgsqlDataSource.Create(db.ConnectionString);
        await using var second = NpgsqlDataSource.Create(db.ConnectionString);
        var candidates = new List<Candidate>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            for (var i = 0; i < 8; i++)
            {
                var source = i % 2 == 0 ? first : second;
                var candidate = new Candidate($"c{i}", new LeaderElection(source, name, LeaderTestKit.FastOptions($"c{i}")), source, log, elections, resignAfterRows: 2);
                candidates.Add(candidate);
                candidate.Start();
            }

            await elections.NextAsync(Handovers, rows: 1, TimeSpan.FromSeconds(30 + Handovers));
        }
        finally
        {
            foreach (var candidate in candidates)
            {
                await candidate.DisposeAsync();
            }
        }

        var all = elections.All;
        var report = await log.CheckAsync(db.DataSource);
        output.WriteLine($"{all.Count} leaderships in {clock.Elapsed.TotalSeconds:F1} s by {all.Select(t => t.Holder).Distinct().Count()} candidates; fencing: {report}");
        Assert.All(candidates, c => Assert.Null(c.Failure));
        Assert.Equal(all.Count, all.Select(t => t.Epoch).Distinct().Count());
        Assert.True(all.Select(t => t.Holder).Distinct().Count() >= 2);
        Assert.Equal(0, report.Violations);
        await first.DisposeAsync();
        await second.DisposeAsync();
        await LeaderTestKit.AssertNothingLeakedAsync(db.DataSource, name);
    }

    [Fact]
    public async Task Eight_candidates_in_two_processes_hand_over_with_the_fence_holding()
    {
        var name = LeaderTestKit.UniqueName("processes");
        var log = await FencedLog.CreateAsync(db.DataSource, "fenced");
        var elections = new Elections();
        var configuration = Path.GetFileName(Path.GetDirectoryName(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)))!;
        var helper = Path.Combine(DotnetCliRoot(), "tests", "RowLock.Leader.Candidate", "bin", configuration, "net10.0", "RowLock.Leader.Candidate.dll");
        Assert.True(File.Exists(helper), $"the candidate helper was not built at {helper}");
        using var child = Process.Start(new ProcessStartInfo("dotnet")
        {
            ArgumentList = { helper, db.ConnectionString, name, log.Table, "4", "2" },
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var childErrors = child.StandardError.ReadToEndAsync();
        Assert.Equal("ready", await child.StandardOutput.ReadLineAsync());
        await using var source = NpgsqlDataSource.Create(db.ConnectionString);
        var candidates = new List<Candidate>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                var candidate = new Candidate($"c{i}", new LeaderElection(source, name, LeaderTestKit.FastOptions($"c{i}")), source, log, elections, resignAfterRows: 2);
                candidates.Add(candidate);
                candidate.Start();
            }

            var clock = Stopwatch.StartNew();
            while (await db.ScalarAsync<long>($"SELECT count(DISTINCT instance LIKE 'p%') FROM {log.Table}") < 2 || await db.ScalarAsync<long>($"SELECT count(DISTINCT epoch) FROM {log.Table}") < Handovers)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60 + Handovers), "the two processes did not hand over often enough");
                await Task.Delay(50);
            }
        }
        finally
        {
            child.StandardInput.Close();
            foreach (var candidate in candidates)
            {
                await candidate.DisposeAsync();
            }

            using var exit = new CancellationTokenSource(LeaderTestKit.Guard);
            await child.WaitForExitAsync(exit.Token);
        }

        output.WriteLine(await child.StandardOutput.ReadToEndAsync());
        Assert.True(child.ExitCode == 0, await childErrors);
        var report = await log.CheckAsync(db.DataSource);
        var byProcess = await db.ScalarAsync<long>($"SELECT count(DISTINCT epoch) FROM {log.Table} WHERE instance LIKE 'p%'");
        output.WriteLine($"two processes: {report}; epochs led by the child process: {byProcess}");
        Assert.All(candidates, c => Assert.Null(c.Failure));
        Assert.Equal(0, report.Violations);
        await source.DisposeAsync();
        await LeaderTestKit.AssertNothingLeakedAsync(db.DataSource, name);
    }

    private static string DotnetCliRoot() => RowLock.TestServer.DotnetCli.RepositoryRoot();
}
