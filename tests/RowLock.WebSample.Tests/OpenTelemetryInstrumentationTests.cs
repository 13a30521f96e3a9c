using System.Diagnostics;
using Dapper;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using RowLock.Tests.Infrastructure;

namespace RowLock.WebSample.Tests;

/// <summary><c>AddRowLockInstrumentation()</c> on OpenTelemetry's builders, exported through the in-memory exporter.</summary>
public sealed class OpenTelemetryInstrumentationTests(DatabaseFixture database) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task A_unit_of_work_is_exported_as_rowlock_metrics_and_a_span()
    {
        var metrics = new List<Metric>();
        var spans = new List<Activity>();
        using (var meterProvider = Sdk.CreateMeterProviderBuilder().AddRowLockInstrumentation().AddInMemoryExporter(metrics).Build())
        using (var tracerProvider = Sdk.CreateTracerProviderBuilder().AddRowLockInstrumentation().AddInMemoryExporter(spans).Build())
        {
            var table = await database.CreateHotRowTableAsync("otel");
            var runner = new TransactionRunner(database.DataSource);
            await runner.RunAsync("otel.increment", async (tx, ct) =>
            {
                await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate, ct);
                await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = v + 1 WHERE id = 1", transaction: tx);
            });

            meterProvider.ForceFlush();
            tracerProvider.ForceFlush();
        }

        var names = metrics.Select(m => m.Name).ToHashSet();
        Assert.Contains("rowlock.unit_of_work.duration", names);
        Assert.Contains("rowlock.lock.wait.duration", names);
        var unitOfWork = metrics.First(m => m.Name == "rowlock.unit_of_work.duration");
        Assert.Equal("s", unitOfWork.Unit);
        var tagged = false;
        foreach (ref readonly var point in unitOfWork.GetMetricPoints())
        {
            foreach (var tag in point.Tags)
            {
                tagged |= tag.Key == "rowlock.operation" && Equals(tag.Value, "otel.increment");
            }
        }

        Assert.True(tagged, "the unit-of-work histogram carries the operation name");
        Assert.Contains(spans, span => span.Source.Name == RowLockTelemetry.ActivitySourceName);
    }

    [Fact]
    public void Null_builders_are_refused()
    {
        Assert.Throws<ArgumentNullException>(() => ((MeterProviderBuilder)null!).AddRowLockInstrumentation());
        Assert.Throws<ArgumentNullException>(() => ((TracerProviderBuilder)null!).AddRowLockInstrumentation());
    }
}
