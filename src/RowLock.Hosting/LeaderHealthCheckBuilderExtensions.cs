using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace RowLock.Hosting;

/// <summary>Registers <see cref="LeaderHealthCheck"/>.</summary>
public static class LeaderHealthCheckBuilderExtensions
{
    /// <summary>
    /// Adds a <see cref="LeaderHealthCheck"/> for the election <paramref name="leaderName"/> on the container's
    /// <see cref="NpgsqlDataSource"/> (or the one <paramref name="dataSource"/> picks): healthy while a leader is known.
    /// </summary>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="leaderName">The election's name.</param>
    /// <param name="mode">How the election holds leadership.</param>
    /// <param name="name">The health check's name; null: <c>rowlock-leader:&lt;leaderName&gt;</c>.</param>
    /// <param name="dataSource">Picks the data source; null: the container's.</param>
    /// <param name="failureStatus">The status when no leader is known; null: Unhealthy.</param>
    /// <param name="tags">Tags for filtering.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="ArgumentException"><paramref name="leaderName"/> is null or empty.</exception>
    public static IHealthChecksBuilder AddRowLockLeader(this IHealthChecksBuilder builder, string leaderName,
        LeaderElectionMode mode = LeaderElectionMode.Session, string? name = null, Func<IServiceProvider, NpgsqlDataSource>? dataSource = null,
        HealthStatus? failureStatus = null, IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrEmpty(leaderName);
        return builder.Add(new HealthCheckRegistration(
            name ?? "rowlock-leader:" + leaderName,
            services => new LeaderHealthCheck(dataSource?.Invoke(services) ?? services.GetRequiredService<NpgsqlDataSource>(), leaderName, mode),
            failureStatus,
            tags));
    }
}
