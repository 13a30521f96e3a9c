using RowLock;

// In OpenTelemetry's namespace, as every instrumentation package does (Npgsql.OpenTelemetry too): the extension is found
// where the builder is, without another using.
namespace OpenTelemetry.Metrics;

/// <summary>Adds RowLock's metrics to an OpenTelemetry <see cref="MeterProviderBuilder"/>.</summary>
public static class RowLockMeterProviderBuilderExtensions
{
    /// <summary>
    /// Subscribes the meter provider to RowLock's meter (<see cref="RowLockTelemetry.MeterName"/>): lock wait and hold
    /// durations, unit-of-work durations, retries, lock conflicts and long lock waits. The instruments, units and tags are listed
    /// in RowLock's telemetry guide (docs/telemetry.md).
    /// </summary>
    /// <param name="builder">The meter provider builder, e.g. from <c>services.AddOpenTelemetry().WithMetrics(...)</c>.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is null.</exception>
    public static MeterProviderBuilder AddRowLockInstrumentation(this MeterProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddMeter(RowLockTelemetry.MeterName);
    }
}
