using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using RowLock.Hosting;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests.Leader;

/// <summary>
/// What an operator sees of leadership changes: the <c>rowlock.leader.*</c> instruments (kept to this test's unique
/// election name), the health check and a log line for every change.
/// </summary>
public sealed class LeaderObservabilityTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task Every_change_is_counted_by_reason_logged_and_the_health_check_knows_whether_a_leader_exists()
    {
        var name = LeaderTestKit.UniqueName("observed");
        var measurements = new ConcurrentQueue<(string Instrument, double Value, string? Reason)>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == RowLockTelemetry.MeterName && instrument.Name.StartsWith("rowlock.leader.", StringComparison.Ordinal))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        void Keep(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string? leader = null, reason = null;
            foreach (var tag in tags)
            {
                leader = tag.Key == "rowlock.leader.name" ? tag.Value as string : leader;
                reason = tag.Key == "rowlock.leader.reason" ? tag.Value as string : reason;
            }

            if (leader == name)
            {
                measurements.Enqueue((instrument.Name, value, reason));
            }
        }

        listener.SetMeasurementEventCallback<long>((i, v, t, _) => Keep(i, v, t));
        listener.SetMeasurementEventCallback<double>((i, v, t, _) => Keep(i, v, t));
        listener.Start();

        using var logs = new RecordingLoggerProvider();
        using var loggerFactory = logs.CreateFactory();
        var health = new LeaderHealthCheck(db.DataSource, name);
        var context = new HealthCheckContext { Registration = new HealthCheckRegistration("leader", health, HealthStatus.Unhealthy, null) };
        var a = new LeaderElection(db.DataSource, name, LeaderTestKit.FastOptions("a"), loggerFactory);
        var b = new LeaderElection(db.DataSource, name, LeaderTestKit.FastOptions("b"), loggerFactory);

        Assert.Equal(HealthStatus.Unhealthy, (await health.CheckHealthAsync(context)).Status);
        var first = await a.AcquireAsync();
        var healthy = await health.CheckHealthAsync(context);
        Assert.Equal(HealthStatus.Healthy, healthy.Status);
        Assert.Equal("a", healthy.Data["holder"]);

        var waiting = b.AcquireAsync();
        await first.DisposeAsync();
        var second = await waiting;
        Assert.Equal(first.Epoch + 1, second.Epoch);
        Assert.Equal(1, await LeaderTestKit.TerminateLeaderBackendAsync(db.DataSource, name));
        Assert.True(await LeaderTestKit.WhenCancelledAsync(second.Lost, LeaderTestKit.Guard));
        Assert.Equal(HealthStatus.Unhealthy, (await health.CheckHealthAsync(context)).Status);
        await second.DisposeAsync();

        var changes = measurements.Where(m => m.Instrument == "rowlock.leader.changes").Select(m => m.Reason).ToList();
        Assert.Equal(["acquired", "resigned", "acquired", "lost"], changes);
        Assert.Equal([1, -1, 1, -1], measurements.Where(m => m.Instrument == "rowlock.leader.is_leader").Select(m => m.Value));
        Assert.Single(measurements, m => m.Instrument == "rowlock.leader.takeover.duration"); // after a resign; a crash leaves no trace to measure from
        Assert.Single(measurements, m => m.Instrument == "rowlock.leader.loss_detection.duration");
        var events = logs.Entries.Where(e => e.Category == "RowLock.Hosting.LeaderElection").Select(e => e.EventId).Where(id => id is 900 or 901 or 902).ToList();
        Assert.Equal([900, 902, 900, 901], events);
    }
}
