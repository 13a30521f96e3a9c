using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace RowLock;

/// <summary>Registers RowLock in a <see cref="IServiceCollection"/>.</summary>
public static class RowLockServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="TransactionRunner"/> as a singleton built from the <see cref="NpgsqlDataSource"/> already in the
    /// container (e.g. from <c>AddNpgsqlDataSource</c>), with <see cref="TransactionRunnerOptions"/> configured through the
    /// options pattern. The first time the runner is resolved, the container's <see cref="ILoggerFactory"/> also becomes
    /// <see cref="RowLockLogging.LoggerFactory"/>, so the lock helpers log through it.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Sets isolation level and retry policy; null keeps the defaults.</param>
    /// <returns>The same service collection.</returns>
    public static IServiceCollection AddRowLock(this IServiceCollection services, Action<TransactionRunnerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<TransactionRunnerOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        services.TryAddSingleton(provider =>
        {
            if (provider.GetService<ILoggerFactory>() is { } loggerFactory)
            {
                RowLockLogging.LoggerFactory = loggerFactory;
            }

            var dataSource = provider.GetService<NpgsqlDataSource>() ?? throw new InvalidOperationException(
                "AddRowLock needs an NpgsqlDataSource in the container: register one first, e.g. services.AddNpgsqlDataSource(connectionString) or services.AddSingleton(NpgsqlDataSource.Create(connectionString)).");
            return new TransactionRunner(
                dataSource,
                provider.GetRequiredService<IOptions<TransactionRunnerOptions>>().Value,
                provider.GetService<ILogger<TransactionRunner>>());
        });
        return services;
    }
}
