using System.Diagnostics;
using Npgsql;
using RowLock.Hosting;
using RowLock.Tests.Infrastructure;
using RowLock.TestServer;
using Xunit.Abstractions;

namespace RowLock.Tests.Leader;

/// <summary>
/// Through PgBouncer in transaction pooling: a session lock is refused with a message that names lease mode, and lease
/// mode keeps the fencing check through partitions of the leader (its renewals stop; the lease expires; a follower takes
/// over; the stale leader's writes, still flowing through its healthy path, are refused by the epoch) and clean resigns.
/// Rounds: ROWLOCK_LEADER_ROUNDS (default 2).
/// </summary>
public sealed class LeaderLeaseTests(DatabaseFixture db, ITestOutputHelper output) : IClassFixture<DatabaseFixture>
{
    private static LeaderElectionOptions LeaseOptions(string instance) => new()
    {
        Mode = LeaderElectionMode.Lease,
        LeaseDuration = TimeSpan.FromSeconds(3),
        LeaseRenewInterval = TimeSpan.FromSeconds(1),
        LeasePollInterval = TimeSpan.FromMilliseconds(300),
        RetryDelay = TimeSpan.FromMilliseconds(200),
        InstanceName = instance,
    };

    [PgBouncerFact]
    public async Task A_session_lock_through_transaction_pooling_is_refused_with_a_message_naming_lease_mode()
    {
        var bouncer = await SharedPgBouncer.GetAsync();
        await using var pooled = NpgsqlDataSource.Create(bouncer.ConnectionStringFor(db.ConnectionString));
        var name = LeaderTestKit.UniqueName("pooled");
        var election = new LeaderElection(pooled, name, LeaderTestKit.FastOptions("a"));
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => election.AcquireAsync());
        Assert.Contains("goes through a pooler", error.Message, StringComparison.Ordinal);
        Assert.Contains("LeaderElectionMode.Lease", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, await db.AdvisoryHoldersAsync(AdvisoryLockKey.FromName(name)));
    }

    [PgBouncerFact]
    public async Task Lease_mode_through_PgBouncer_keeps_the_fence_through_partitions_and_resigns()
    {
        var bouncer = await SharedPgBouncer.GetAsync();
        var pooledString = bouncer.ConnectionStringFor(db.ConnectionString);
        var name = LeaderTestKit.UniqueName("lease");
        await using var admin = NpgsqlDataSource.Create(pooledString);
        var log = await FencedLog.CreateAsync(admin, "lease_fenced");
        var elections = new Elections();
        var timing = new LeaderTiming("lease: leader partitioned (lease 3 s, renew 1 s, poll 0.3 s)");
        var proxies = new List<FaultProxy>();
        var dataSources = new List<NpgsqlDataSource>();
        var candidates = new List<Candidate>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var proxy = FaultProxy.For(pooledString);
                proxies.Add(proxy);
                var electionSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(proxy.ConnectionStringFor(pooledString)) { Timeout = 2 }.ConnectionString);
                var businessSource = NpgsqlDataSource.Create(pooledString);
                dataSources.Add(electionSource);
                dataSources.Add(businessSource);
                var candidate = new Candidate($"c{i}", new LeaderElection(electionSource, name, LeaseOptions($"c{i}")), businessSource, log, elections);
                candidates.Add(candidate);
                candidate.Start();
            }

            var epoch = 0L;
            for (var round = 0; round < LeaderTiming.Rounds(2); round++)
            {
                var leader = await elections.NextAsync(epoch, rows: 3, LeaderTestKit.Guard);
                var proxy = proxies[candidates.FindIndex(c => c.Id == leader.Holder)];
                var faultAt = Stopwatch.GetTimestamp();
                proxy.Mode = ProxyMode.Silent;
                var next = await elections.NextAsync(leader.Epoch, rows: 1, LeaderTestKit.Guard);
                timing.Add(faultAt, next.AcquiredAt);
                Assert.True(await LeaderTestKit.WhenCancelledAsync(leader.Leadership.Lost, LeaderTestKit.Guard), "the partitioned leader's Lost token was not cancelled");
                output.WriteLine($"round {round}: epoch {leader.Epoch} ({leader.Holder}) -> {next.Epoch} ({next.Holder}); old leader: {leader.Leadership.EndReason}");
                proxy.Mode = ProxyMode.Forward;
                epoch = next.Epoch - 1;
            }

            // A clean resign hands over within the followers' poll interval.
            var current = await elections.NextAsync(epoch, rows: 1, LeaderTestKit.Guard);
            await current.Leadership.DisposeAsync();
            Assert.Equal("resigned", current.Leadership.EndReason);
            await elections.NextAsync(current.Epoch, rows: 1, LeaderTestKit.Guard);
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

            foreach (var source in dataSources)
            {
                await source.DisposeAsync();
            }
        }

        output.WriteLine(timing.ToString());
        var report = await log.CheckAsync(admin);
        var stale = candidates.Sum(c => c.StaleRejections);
        output.WriteLine($"fencing: {report}; stale writes refused by the fence: {stale}");
        Assert.All(candidates, c => Assert.Null(c.Failure));
        Assert.Equal(0, report.Violations);
        Assert.True(stale > 0, "no stale lease holder's write was refused by the fence");
    }
}
