using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using RowLock.Hosting;
using RowLock.Tests.Infrastructure;
using Xunit.Abstractions;

namespace RowLock.Tests.Leader;

/// <summary>
/// <c>AddRowLockLeaderService&lt;TWorker&gt;</c> in three service providers ("hosts"): the worker runs on exactly one; stopping
/// that host cancels its worker's token and resigns, and a follower takes over without waiting for a timeout.
/// Rounds: ROWLOCK_LEADER_ROUNDS (default 2).
/// </summary>
public sealed class LeaderHostingTests(DatabaseFixture db, ITestOutputHelper output) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task Host_stopped_resigns_and_a_follower_takes_over_at_once_with_the_fence_holding()
    {
        var name = LeaderTestKit.UniqueName("hosted");
        var log = await FencedLog.CreateAsync(db.DataSource, "fenced");
        var elections = new Elections();
        var timing = new LeaderTiming("host stopped (StopAsync)");
        var hosts = new List<Host>();
        for (var i = 0; i < 3; i++)
        {
            hosts.Add(await Host.StartAsync($"h{i}", db.ConnectionString, name, log, elections));
        }

        try
        {
            var epoch = 0L;
            for (var round = 0; round < LeaderTiming.Rounds(2); round++)
            {
                var leader = await elections.NextAsync(epoch, rows: 3, LeaderTestKit.Guard);
                var host = hosts.Single(h => h.Id == leader.Holder);
                var faultAt = Stopwatch.GetTimestamp();
                await host.StopAsync();
                Assert.True(leader.Leadership.IsLost, "stopping the host did not cancel the leader's token");
                var next = await elections.NextAsync(leader.Epoch, rows: 1, LeaderTestKit.Guard);
                timing.Add(faultAt, next.AcquiredAt);
                output.WriteLine($"round {round}: epoch {leader.Epoch} ({leader.Holder}) -> {next.Epoch} ({next.Holder}); old leader: {leader.Leadership.EndReason}");
                Assert.Equal("resigned", leader.Leadership.EndReason);
                hosts[hosts.IndexOf(host)] = await Host.StartAsync(host.Id + "'", db.ConnectionString, name, log, elections);
                epoch = next.Epoch - 1;
            }
        }
        finally
        {
            foreach (var host in hosts)
            {
                await host.StopAsync();
            }
        }

        output.WriteLine(timing.ToString());
        var report = await log.CheckAsync(db.DataSource);
        output.WriteLine($"fencing: {report}");
        Assert.Equal(0, report.Violations);
        await LeaderTestKit.AssertNothingLeakedAsync(db.DataSource, name);
    }

    [Fact]
    public async Task Options_bind_from_configuration_and_CanLead_false_keeps_an_instance_out()
    {
        var name = LeaderTestKit.UniqueName("bound");
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Leaders:Mode"] = "Lease",
            ["Leaders:LeaseDuration"] = "00:00:09",
            ["Leaders:LeaseRenewInterval"] = "00:00:03",
            ["Leaders:InstanceName"] = "from-config",
        }).Build();
        var services = new ServiceCollection();
        services.AddSingleton(db.DataSource);
        services.AddRowLockLeaderElection(name, configuration.GetSection("Leaders"), o => o.CanLead = () => false);
        await using var provider = services.BuildServiceProvider();
        var election = provider.GetRequiredKeyedService<LeaderElection>(name);
        Assert.Same(election, provider.GetRequiredKeyedService<ILeaderElection>(name));
        Assert.Equal(LeaderElectionMode.Lease, election.Mode);
        Assert.Equal("from-config", election.InstanceName);
        Assert.Null(await election.TryAcquireAsync());
    }

    [Fact]
    public void Out_of_range_options_are_refused_with_a_message_naming_the_setting()
    {
        var error = Assert.Throws<ArgumentException>(() => new LeaderElection(db.DataSource, "x",
            new LeaderElectionOptions { KeepaliveInterval = TimeSpan.FromSeconds(5), KeepaliveTimeout = TimeSpan.FromSeconds(5), SessionTimeout = TimeSpan.FromSeconds(10) }));
        Assert.StartsWith("SessionTimeout (00:00:10) must be longer than KeepaliveInterval + KeepaliveTimeout (00:00:10)", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new LeaderElection(db.DataSource, ""));
        Assert.Throws<ArgumentException>(() => new LeaderElection(db.DataSource, "x", new LeaderElectionOptions { LeaseRenewInterval = TimeSpan.FromSeconds(6) }));
    }

    private sealed class Host : IAsyncDisposable
    {
        private readonly ServiceProvider _provider;
        private readonly List<IHostedService> _services;
        private bool _stopped;

        private Host(string id, ServiceProvider provider)
        {
            Id = id;
            _provider = provider;
            _services = provider.GetServices<IHostedService>().ToList();
        }

        public string Id { get; }

        public static async Task<Host> StartAsync(string id, string connectionString, string name, FencedLog log, Elections elections)
        {
            var services = new ServiceCollection();
            services.AddSingleton(_ => NpgsqlDataSource.Create(connectionString));
            services.AddSingleton(log);
            services.AddSingleton(elections);
            services.AddSingleton(new HostId(id));
            services.AddRowLockLeaderService<FencedWorker>(name, o =>
            {
                var fast = LeaderTestKit.FastOptions(id);
                o.KeepaliveInterval = fast.KeepaliveInterval;
                o.KeepaliveTimeout = fast.KeepaliveTimeout;
                o.SessionTimeout = fast.SessionTimeout;
                o.RetryDelay = fast.RetryDelay;
                o.InstanceName = id;
            });
            var host = new Host(id, services.BuildServiceProvider());
            foreach (var service in host._services)
            {
                await service.StartAsync(CancellationToken.None);
            }

            return host;
        }

        public async Task StopAsync()
        {
            if (_stopped)
            {
                return;
            }

            _stopped = true;
            foreach (var service in _services)
            {
                await service.StopAsync(CancellationToken.None);
            }

            await _provider.DisposeAsync();
        }

        public ValueTask DisposeAsync() => new(StopAsync());
    }

    private sealed record HostId(string Value);

    /// <summary>Appends fenced rows until its token is cancelled (loss or stop).</summary>
    private sealed class FencedWorker(NpgsqlDataSource dataSource, FencedLog log, Elections elections, HostId id) : ILeaderWorker
    {
        public async Task RunAsync(Leadership leadership, CancellationToken cancellationToken)
        {
            var tenure = elections.Acquired(id.Value, leadership);
            var runner = new TransactionRunner(dataSource);
            while (!cancellationToken.IsCancellationRequested)
            {
                try
                {
                    await log.AppendAsync(runner, leadership, id.Value, deferred: tenure.Rows % 2 == 0, cancellationToken);
                    tenure.Rows++;
                }
                catch (LeadershipLostException)
                {
                    return;
                }

                await Task.Delay(5, cancellationToken);
            }
        }
    }
}
