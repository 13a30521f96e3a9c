using System.Diagnostics;
using Npgsql;
using RowLock.Hosting;
using RowLock.Tests.Infrastructure;
using RowLock.TestServer;
using Xunit.Abstractions;

namespace RowLock.Tests.Leader;

/// <summary>
/// Faults on the leader's session, with three candidates (each its own data sources; the election's connections through
/// a fault proxy of its own, the business writes direct): after each fault a new leader takes over, the old leadership's
/// Lost token is cancelled, and the fencing check holds over every row every leader appended. The leaders write while they
/// believe they lead and never look at Lost, so what stops a stale leader is the database's fence.
/// Rounds per fault: ROWLOCK_LEADER_ROUNDS (default 2).
/// </summary>
public sealed class LeaderFaultTests(DatabaseFixture db, ITestOutputHelper output) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public Task Leader_backend_killed_a_follower_takes_over_and_no_stale_write_lands() =>
        RunAsync("backend killed (pg_terminate_backend)", async (leader, _, name) =>
            Assert.Equal(1, await LeaderTestKit.TerminateLeaderBackendAsync(db.DataSource, name)));

    [Fact]
    public Task Leader_connection_reset_a_follower_takes_over_and_no_stale_write_lands() =>
        RunAsync("connection reset (RST)", (_, proxy, _) =>
        {
            proxy.ResetOpenConnections();
            return Task.CompletedTask;
        });

    [Fact]
    public async Task Silent_partition_of_the_leader_ends_its_session_on_the_server_and_its_stale_writes_are_refused()
    {
        var stale = await RunAsync("silent partition (keepalive 0.5+2 s, idle_session_timeout 5 s)", (_, proxy, _) =>
        {
            Assert.True(proxy.SilenceOpenConnections() >= 1);
            return Task.CompletedTask;
        });

        // The partitioned leaders kept writing (through their own, healthy path) until the new epoch existed: the fence refused them.
        Assert.True(stale > 0, "no stale leader write was refused by the fence");
    }

    private async Task<int> RunAsync(string fault, Func<Tenure, FaultProxy, string, Task> inject)
    {
        var name = LeaderTestKit.UniqueName("fault");
        var log = await FencedLog.CreateAsync(db.DataSource, "fenced");
        var elections = new Elections();
        var proxies = new List<FaultProxy>();
        var dataSources = new List<NpgsqlDataSource>();
        var candidates = new List<Candidate>();
        var timing = new LeaderTiming(fault);
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var proxy = FaultProxy.For(db.ConnectionString);
                proxies.Add(proxy);
                var electionSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(proxy.ConnectionStringFor(db.ConnectionString)) { Timeout = 3 }.ConnectionString);
                var businessSource = NpgsqlDataSource.Create(db.ConnectionString);
                dataSources.Add(electionSource);
                dataSources.Add(businessSource);
                var candidate = new Candidate($"c{i}", new LeaderElection(electionSource, name, LeaderTestKit.FastOptions($"c{i}")), businessSource, log, elections);
                candidates.Add(candidate);
                candidate.Start();
            }

            var epoch = 0L;
            for (var round = 0; round < LeaderTiming.Rounds(2); round++)
            {
                var leader = await elections.NextAsync(epoch, rows: 3, LeaderTestKit.Guard);
                var proxy = proxies[candidates.FindIndex(c => c.Id == leader.Holder)];
                var faultAt = Stopwatch.GetTimestamp();
                await inject(leader, proxy, name);
                var next = await elections.NextAsync(leader.Epoch, rows: 1, LeaderTestKit.Guard);
                timing.Add(faultAt, next.AcquiredAt);
                Assert.True(await LeaderTestKit.WhenCancelledAsync(leader.Leadership.Lost, LeaderTestKit.Guard),
                    $"the old leader's Lost token (epoch {leader.Epoch}) was not cancelled");
                output.WriteLine($"round {round}: epoch {leader.Epoch} ({leader.Holder}) -> {next.Epoch} ({next.Holder}); old leader: {leader.Leadership.EndReason}");
                epoch = next.Epoch - 1; // the next round faults this leader (or a later one)
            }
        }
        finally
        {
            foreach (var candidate in candidates)
            {
                await candidate.DisposeAsync();
            }

            foreach (var proxy in proxies)
            {
                await proxy.DisposeAsync();
            }

            foreach (var dataSource in dataSources)
            {
                await dataSource.DisposeAsync();
            }
        }

        output.WriteLine(timing.ToString());
        var report = await log.CheckAsync(db.DataSource);
        var stale = candidates.Sum(c => c.StaleRejections);
        output.WriteLine($"fencing: {report}; stale writes refused by the fence: {stale}");
        Assert.All(candidates, c => Assert.Null(c.Failure));
        Assert.Equal(0, report.Violations);
        Assert.True(report.Epochs >= 2);
        await LeaderTestKit.AssertNothingLeakedAsync(db.DataSource, name);
        return stale;
    }
}
