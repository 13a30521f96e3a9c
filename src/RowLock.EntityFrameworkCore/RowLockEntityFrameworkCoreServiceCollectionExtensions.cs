using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace RowLock.EntityFrameworkCore;

/// <summary>Registers the EF Core unit-of-work runner in a <see cref="IServiceCollection"/>.</summary>
public static class RowLockEntityFrameworkCoreServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="DbContextTransactionRunner{TContext}"/> as a singleton built from the container's
    /// <see cref="IDbContextFactory{TContext}"/> (e.g. from <c>AddDbContextFactory</c>) and the same
    /// <see cref="TransactionRunnerOptions"/> that <c>AddRowLock</c> configures (from code or from configuration, validated
    /// when the host starts), logging through the container's <see cref="ILoggerFactory"/>. Without <c>AddRowLock</c> the
    /// runner uses the default options. Chain it: <c>services.AddRowLock(configuration.GetSection("RowLock")).AddDbContextTransactionRunner&lt;ShopContext&gt;()</c>.
    /// </summary>
    /// <typeparam name="TContext">The context type the factory creates.</typeparam>
    /// <param name="services">The service collection.</param>
    /// <returns>The same service collection.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> is null.</exception>
    public static IServiceCollection AddDbContextTransactionRunner<TContext>(this IServiceCollection services)
        where TContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions<TransactionRunnerOptions>();
        services.TryAddSingleton(provider => new DbContextTransactionRunner<TContext>(
            provider.GetService<IDbContextFactory<TContext>>() ?? throw new InvalidOperationException(
                $"AddDbContextTransactionRunner<{typeof(TContext).Name}> needs an IDbContextFactory<{typeof(TContext).Name}> in the container: register one first, e.g. services.AddDbContextFactory<{typeof(TContext).Name}>(o => o.UseNpgsql(connectionString).UseRowLock())."),
            provider.GetRequiredService<IOptions<TransactionRunnerOptions>>().Value,
            provider.GetService<ILogger<DbContextTransactionRunner<TContext>>>()));
        return services;
    }
}
