using System.Diagnostics;
using Npgsql;
using RowLock.Hosting;
using RowLock.Tests.Infrastructure;
using Xunit.Abstractions;

namespace RowLock.Tests.Leader;

/// <summary>
/// The primary is killed (<c>pg_ctl stop -m immediate</c>) and its synchronous standby promoted, with three candidates on
/// a multi-host data source: the leader's Lost fires, a candidate leads on the promoted server with a newer epoch (the
/// epoch row was replicated synchronously), and the fencing check holds across the failover.
/// Rounds: ROWLOCK_LEADER_ROUNDS (default 1; each rebuilds the standby).
/// </summary>
[Collection(ReplicatedPairCollection.Name)]
public sealed class LeaderFailoverTests(ITestOutputHelper output)
{
    [ReplicatedPairFact]
    public async Task Primary_failover_a_candidate_leads_on_the_promoted_server_and_no_stale_write_lands()
    {
        var pair = await SharedReplicatedPair.GetWithStandbyAsync();
        var database = await pair.CreateDatabaseAsync("leader");
        // Npgsql remembers the promoted server as a standby for Host Recheck Seconds; 2 keeps the takeover short.
        var connectionString = new NpgsqlConnectionStringBuilder(database) { HostRecheckSeconds = 2 }.ConnectionString;
        await using var admin = NpgsqlDataSource.Create(connectionString);
        var name = LeaderTestKit.UniqueName("failover");
        var log = await FencedLog.CreateAsync(admin, "fenced");
        var elections = new Elections();
        var timing = new LeaderTiming("primary failover");
        var dataSources = new List<NpgsqlDataSource>();
        var candidates = new List<Candidate>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var source = NpgsqlDataSource.Create(connectionString);
                dataSources.Add(source);
                var candidate = new Candidate($"c{i}", new LeaderElection(source, name, LeaderTestKit.FastOptions($"c{i}")), source, log, elections);
                candidates.Add(candidate);
                candidate.Start();
            }

            var epoch = 0L;
            for (var round = 0; round < LeaderTiming.Rounds(1); round++)
            {
                await pair.RebuildStandbyAsync();
                var leader = await elections.NextAsync(epoch, rows: 3, LeaderTestKit.Guard);
                var faultAt = Stopwatch.GetTimestamp();
                var promotion = await pair.FailOverAsync();
                var next = await elections.NextAsync(leader.Epoch, rows: 1, LeaderTestKit.Guard);
                timing.Add(faultAt, next.AcquiredAt);
                Assert.True(await LeaderTestKit.WhenCancelledAsync(leader.Leadership.Lost, LeaderTestKit.Guard), "the old leader's Lost token was not cancelled");
                output.WriteLine($"round {round}: promotion {promotion.TotalMilliseconds:F0} ms; epoch {leader.Epoch} ({leader.Holder}) -> {next.Epoch} ({next.Holder}); old leader: {leader.Leadership.EndReason}");
                epoch = next.Epoch - 1;
            }
        }
        finally
        {
            foreach (var candidate in candidates)
            {
                await candidate.DisposeAsync();
            }

            foreach (var source in dataSources)
            {
                await source.DisposeAsync();
            }
        }

        output.WriteLine(timing.ToString());
        var report = await log.CheckAsync(admin);
        output.WriteLine($"fencing: {report}; stale writes refused by the fence: {candidates.Sum(c => c.StaleRejections)}");
        Assert.All(candidates, c => Assert.Null(c.Failure));
        Assert.Equal(0, report.Violations);
        Assert.True(report.Epochs >= 2);
        await LeaderTestKit.AssertNothingLeakedAsync(admin, name);
    }
}
