using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Issue 16 item 6: a health check that turns Degraded on a long lock wait and names the root blocker.</summary>
public sealed class LockWaitHealthCheckTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task A_wait_longer_than_the_threshold_is_Degraded_and_names_the_root_blocker()
    {
        await using var chain = await StagedLockChain.StageAsync(db);
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton(db.DataSource);
        services.AddHealthChecks().AddRowLockLockWaits(configure: o =>
        {
            o.Threshold = TimeSpan.FromTicks(1); // every staged wait is older than this
            o.AdvisoryKeyNames = new AdvisoryKeyNames([StagedLockChain.AdvisoryName]);
        });
        await using var provider = services.BuildServiceProvider();

        var report = await provider.GetRequiredService<HealthCheckService>().CheckHealthAsync();

        var entry = report.Entries["rowlock-lock-waits"];
        Assert.Equal(HealthStatus.Degraded, entry.Status);
        Assert.Equal(chain.Pids["A"], entry.Data["root_blocker_pid"]);
        Assert.Equal(4, entry.Data["root_blocker_holds_up"]);
        Assert.Equal("A", entry.Data["root_blocker_application"]);
        Assert.Equal(5, entry.Data["waiting"]);
        Assert.Equal(chain.Pids["B"], entry.Data["longest_waiter_pid"]);
        Assert.Matches(@"^pid \d+ \(B\) has waited \d\d:\d\d:\d\d for row \(0,1\) of public\.accounts via transaction \d+ \[ShareLock\]; root blocker pid \d+ \(A\) idle in transaction for \d\d:\d\d:\d\d, transaction open \d\d:\d\d:\d\d, holds up 4; last statement: SELECT balance FROM accounts WHERE id = 1 FOR UPDATE$", entry.Description);
    }

    [Fact]
    public async Task Waits_shorter_than_the_threshold_are_Healthy()
    {
        await using var chain = await StagedLockChain.StageAsync(db);
        var check = new LockWaitHealthCheck(db.DataSource, new LockWaitHealthCheckOptions { Threshold = TimeSpan.FromHours(1) });

        var result = await check.CheckHealthAsync(Context(check));

        Assert.Equal(HealthStatus.Healthy, result.Status);
        Assert.Equal(5, result.Data["waiting"]);
    }

    [Fact]
    public async Task An_unreachable_server_reports_the_failure_status_with_the_exception()
    {
        await using var nowhere = NpgsqlDataSource.Create("Host=127.0.0.1;Port=1;Timeout=3;Username=x");
        var check = new LockWaitHealthCheck(nowhere, new LockWaitHealthCheckOptions());

        var result = await check.CheckHealthAsync(Context(check));

        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.IsAssignableFrom<NpgsqlException>(result.Exception);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LockWaitHealthCheck(db.DataSource, new LockWaitHealthCheckOptions { Threshold = TimeSpan.Zero }));
    }

    [Fact]
    public async Task It_is_registered_as_a_readiness_check_so_a_liveness_probe_never_restarts_the_app_over_a_lock_wait()
    {
        await using var chain = await StagedLockChain.StageAsync(db);
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton(db.DataSource);
        services.AddHealthChecks().AddRowLockLockWaits(configure: o => o.Threshold = TimeSpan.FromTicks(1));
        await using var provider = services.BuildServiceProvider();
        var registration = Assert.Single(provider.GetRequiredService<Microsoft.Extensions.Options.IOptions<HealthCheckServiceOptions>>().Value.Registrations);
        Assert.Equal(LockWaitHealthCheckBuilderExtensions.DefaultName, registration.Name);
        Assert.Equal(["ready"], registration.Tags);

        var health = provider.GetRequiredService<HealthCheckService>();
        var ready = await health.CheckHealthAsync(c => c.Tags.Contains("ready"));
        var live = await health.CheckHealthAsync(c => c.Tags.Contains("live"));

        Assert.Equal(HealthStatus.Degraded, ready.Status);
        Assert.Equal(HealthStatus.Healthy, live.Status);
        Assert.Empty(live.Entries);
    }

    private static HealthCheckContext Context(IHealthCheck check) =>
        new() { Registration = new HealthCheckRegistration("locks", check, HealthStatus.Unhealthy, null) };
}
