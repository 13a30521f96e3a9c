using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace RowLock;

/// <summary>Registers <see cref="LockWaitHealthCheck"/>.</summary>
public static class LockWaitHealthCheckBuilderExtensions
{
    /// <summary>
    /// Adds a <see cref="LockWaitHealthCheck"/> on the <see cref="NpgsqlDataSource"/> registered in the container (or the one
    /// <paramref name="dataSource"/> picks). It reports Degraded when a session has waited on a lock longer than the threshold.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> or <paramref name="name"/> is null.</exception>
    public static IHealthChecksBuilder AddRowLockLockWaits(
        this IHealthChecksBuilder builder,
        string name = "rowlock-lock-waits",
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
            tags));
    }
}
