using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace RowLock;

/// <summary>Registers <see cref="LockWaitHealthCheck"/>.</summary>
public static class LockWaitHealthCheckBuilderExtensions
{
    /// <summary>The registration's default name: <c>rowlock-lock-waits</c>.</summary>
    public const string DefaultName = "rowlock-lock-waits";

    /// <summary>
    /// The tag the check carries by default: <c>ready</c>. A long lock wait means "send no new traffic here for now"
    /// (readiness), never "restart this process" (liveness): restarting does not end another session's transaction. Map it
    /// with <c>app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") })</c>.
    /// </summary>
    public const string ReadyTag = "ready";

    /// <summary>
    /// Adds a <see cref="LockWaitHealthCheck"/> on the <see cref="NpgsqlDataSource"/> registered in the container (or the one
    /// <paramref name="dataSource"/> picks). It reports Degraded when a session has waited on a lock longer than the threshold.
    /// </summary>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="name">The registration's name; default <see cref="DefaultName"/>.</param>
    /// <param name="configure">Sets the threshold and the advisory names.</param>
    /// <param name="dataSource">Picks the data source; default: the container's <see cref="NpgsqlDataSource"/>.</param>
    /// <param name="failureStatus">Reported when the snapshot itself fails; default Unhealthy.</param>
    /// <param name="tags">The registration's tags; default <see cref="ReadyTag"/> only (a readiness check, not a liveness one).</param>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> or <paramref name="name"/> is null.</exception>
    public static IHealthChecksBuilder AddRowLockLockWaits(
        this IHealthChecksBuilder builder,
        string name = DefaultName,
        Action<LockWaitHealthCheckOptions>? configure = null,
        Func<IServiceProvider, NpgsqlDataSource>? dataSource = null,
        HealthStatus? failureStatus = null,
        IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(name);
        var options = new LockWaitHealthCheckOptions();
        configure?.Invoke(options);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.Threshold, TimeSpan.Zero, "Threshold");
        return builder.Add(new HealthCheckRegistration(
            name,
            services => new LockWaitHealthCheck(dataSource?.Invoke(services) ?? services.GetRequiredService<NpgsqlDataSource>(), options),
            failureStatus,
            tags ?? [ReadyTag]));
    }
}
