using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using RowLock.Hosting.Internal;

namespace RowLock.Hosting;

/// <summary>Registers leader elections and leader services in a <see cref="IServiceCollection"/>.</summary>
public static class LeaderServiceCollectionExtensions
{
    /// <summary>
    /// Registers a hosted service that runs <typeparamref name="TWorker"/> only while this instance leads the election
    /// <paramref name="name"/>, and again each time it regains leadership; stopping the host cancels the worker and
    /// resigns, so a follower takes over at once. Also registers the election (see
    /// <see cref="AddRowLockLeaderElection(IServiceCollection, string, Action{LeaderElectionOptions}?)"/>) and
    /// <typeparamref name="TWorker"/> as scoped (unless already registered). Needs an <see cref="NpgsqlDataSource"/> in the container.
    /// </summary>
    /// <typeparam name="TWorker">The leader's work.</typeparam>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The election's name.</param>
    /// <param name="configure">Sets the election's options (named options, keyed by <paramref name="name"/>); null keeps the defaults.</param>
    /// <returns>The same service collection.</returns>
    /// <exception cref="ArgumentException"><paramref name="name"/> is null or empty.</exception>
    public static IServiceCollection AddRowLockLeaderService<TWorker>(this IServiceCollection services, string name, Action<LeaderElectionOptions>? configure = null)
        where TWorker : class, ILeaderWorker
    {
        AddRowLockLeaderElection(services, name, configure);
        return AddService<TWorker>(services, name);
    }

    /// <summary>
    /// Like <see cref="AddRowLockLeaderService{TWorker}(IServiceCollection, string, Action{LeaderElectionOptions}?)"/>, with the
    /// options bound from configuration, e.g. <c>builder.Configuration.GetSection("RowLock:Leaders:nightly-sync")</c> over
    /// <c>{ "Mode": "Lease", "LeaseDuration": "00:00:20", "LeaseRenewInterval": "00:00:05" }</c>; every property of
    /// <see cref="LeaderElectionOptions"/> but <see cref="LeaderElectionOptions.CanLead"/> binds.
    /// </summary>
    /// <typeparam name="TWorker">The leader's work.</typeparam>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The election's name.</param>
    /// <param name="configuration">The section holding the options.</param>
    /// <param name="configure">Runs after binding, for what configuration cannot hold (<see cref="LeaderElectionOptions.CanLead"/>); null for none.</param>
    /// <returns>The same service collection.</returns>
    public static IServiceCollection AddRowLockLeaderService<TWorker>(this IServiceCollection services, string name, IConfiguration configuration,
        Action<LeaderElectionOptions>? configure = null)
        where TWorker : class, ILeaderWorker
    {
        AddRowLockLeaderElection(services, name, configuration, configure);
        return AddService<TWorker>(services, name);
    }

    /// <summary>
    /// Registers the election <paramref name="name"/> as a keyed singleton (<see cref="LeaderElection"/> and
    /// <see cref="ILeaderElection"/>, key = the name), for code that is not a hosted service:
    /// <c>[FromKeyedServices("name")] ILeaderElection election</c>. Built from the container's <see cref="NpgsqlDataSource"/>
    /// and <see cref="ILoggerFactory"/>; the options are validated when it is first resolved.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The election's name.</param>
    /// <param name="configure">Sets the options; null keeps the defaults.</param>
    /// <returns>The same service collection.</returns>
    public static IServiceCollection AddRowLockLeaderElection(this IServiceCollection services, string name, Action<LeaderElectionOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrEmpty(name);
        var options = services.AddOptions<LeaderElectionOptions>(name);
        if (configure is not null)
        {
            options.Configure(configure);
        }

        return AddElection(services, name);
    }

    /// <summary>Like <see cref="AddRowLockLeaderElection(IServiceCollection, string, Action{LeaderElectionOptions}?)"/>, with the options bound from configuration.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The election's name.</param>
    /// <param name="configuration">The section holding the options.</param>
    /// <param name="configure">Runs after binding; null for none.</param>
    /// <returns>The same service collection.</returns>
    public static IServiceCollection AddRowLockLeaderElection(this IServiceCollection services, string name, IConfiguration configuration,
        Action<LeaderElectionOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(configuration);
        var options = services.AddOptions<LeaderElectionOptions>(name).Bind(configuration);
        if (configure is not null)
        {
            options.Configure(configure);
        }

        return AddElection(services, name);
    }

    private static IServiceCollection AddElection(IServiceCollection services, string name)
    {
        services.TryAddKeyedSingleton(name, (provider, _) => new LeaderElection(
            provider.GetService<NpgsqlDataSource>() ?? throw new InvalidOperationException(
                $"The leader election '{name}' needs an NpgsqlDataSource in the container: register one first, e.g. services.AddNpgsqlDataSource(connectionString)."),
            name,
            provider.GetRequiredService<IOptionsMonitor<LeaderElectionOptions>>().Get(name),
            provider.GetService<ILoggerFactory>()));
        services.TryAddKeyedSingleton<ILeaderElection>(name, (provider, key) => provider.GetRequiredKeyedService<LeaderElection>(key));
        return services;
    }

    private static IServiceCollection AddService<TWorker>(IServiceCollection services, string name)
        where TWorker : class, ILeaderWorker
    {
        services.TryAddScoped<TWorker>();
        services.AddSingleton<IHostedService>(provider => new LeaderBackgroundService<TWorker>(
            provider.GetRequiredKeyedService<LeaderElection>(name),
            provider.GetRequiredService<IServiceScopeFactory>(),
            (provider.GetService<ILoggerFactory>() ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance).CreateLogger(LeaderLog.Category),
            provider.GetRequiredService<IOptionsMonitor<LeaderElectionOptions>>().Get(name).RetryDelay));
        return services;
    }
}
