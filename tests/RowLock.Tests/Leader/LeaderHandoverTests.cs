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
}
