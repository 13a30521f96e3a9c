using RowLock;

namespace OpenTelemetry.Trace;

/// <summary>Adds RowLock's spans to an OpenTelemetry <see cref="TracerProviderBuilder"/>.</summary>
public static class RowLockTracerProviderBuilderExtensions
{
    /// <summary>
    /// Subscribes the tracer provider to RowLock's activity source (<see cref="RowLockTelemetry.ActivitySourceName"/>): one
    /// span per unit of work run by the transaction runners, with its attempts and outcome. Add Npgsql's own instrumentation
    /// (<c>AddNpgsql()</c> from Npgsql.OpenTelemetry) beside it to see each command inside.
    /// </summary>
    /// <param name="builder">The tracer provider builder, e.g. from <c>services.AddOpenTelemetry().WithTracing(...)</c>.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is null.</exception>
    public static TracerProviderBuilder AddRowLockInstrumentation(this TracerProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddSource(RowLockTelemetry.ActivitySourceName);
    }
}
