using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>Registers RowLock in a <see cref="IServiceCollection"/>.</summary>
public static class RowLockServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="TransactionRunner"/> as a singleton built from the <see cref="NpgsqlDataSource"/> already in the
    /// container (e.g. from <c>AddNpgsqlDataSource</c>), with <see cref="TransactionRunnerOptions"/> configured through the
    /// options pattern, and <see cref="AdvisoryLocks"/> as a singleton on the same data source. Both log through the
    /// container's <see cref="ILoggerFactory"/> (categories <c>RowLock.TransactionRunner</c> and <c>RowLock.AdvisoryLocks</c>);
    /// nothing is stored outside the container, so disposing one container never affects another. The options are
    /// validated when the host starts (<c>ValidateOnStart</c>): an out-of-range retry option fails the start with an
    /// <see cref="OptionsValidationException"/> that carries Polly's message.
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

        return AddRunner(services);
    }

    /// <summary>
    /// Like <see cref="AddRowLock(IServiceCollection, Action{TransactionRunnerOptions})"/>, with the runner options bound from
    /// configuration, e.g. <c>services.AddRowLock(builder.Configuration.GetSection("RowLock"))</c> over
    /// <c>{ "RowLock": { "IsolationLevel": "RepeatableRead", "Retry": { "MaxRetryAttempts": 5, "Delay": "00:00:00.020", "MaxDelay": "00:00:02" } } }</c>.
    /// Keys: <c>IsolationLevel</c>; under <c>Retry</c> every plain property of <see cref="RowLockRetryStrategyOptions"/>
    /// (<c>MaxRetryAttempts</c>, <c>Delay</c>, <c>MaxDelay</c>, <c>BackoffType</c>, <c>UseJitter</c>, <c>RetryOnConnectionLoss</c>,
    /// <c>RetryOnLockNotAvailable</c>). A key that names no option (a misspelling) is an error, not ignored
    /// (<see cref="BinderOptions.ErrorOnUnknownConfiguration"/>), and values are validated when the host starts
    /// (<c>ValidateOnStart</c>, Polly's range checks): both fail the start, or the first resolution of the runner without a host.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configuration">The section holding the runner options.</param>
    /// <param name="configure">Runs after binding, for what configuration cannot hold (delegates, a clock); null for none.</param>
    /// <returns>The same service collection.</returns>
    public static IServiceCollection AddRowLock(this IServiceCollection services, IConfiguration configuration, Action<TransactionRunnerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        var options = services.AddOptions<TransactionRunnerOptions>().Bind(configuration, binder => binder.ErrorOnUnknownConfiguration = true);
        if (configure is not null)
        {
            options.Configure(configure);
        }

        return AddRunner(services);
    }

    private static IServiceCollection AddRunner(IServiceCollection services)
    {
        services.AddOptions<TransactionRunnerOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<TransactionRunnerOptions>, TransactionRunnerOptionsValidator>());
        services.TryAddSingleton(provider => new TransactionRunner(
            RequireDataSource(provider),
            provider.GetRequiredService<IOptions<TransactionRunnerOptions>>().Value,
            provider.GetService<ILogger<TransactionRunner>>()));
        services.TryAddSingleton(provider => new AdvisoryLocks(RequireDataSource(provider), provider.GetService<ILoggerFactory>()));
        return services;
    }

    private static NpgsqlDataSource RequireDataSource(IServiceProvider provider) =>
        provider.GetService<NpgsqlDataSource>() ?? throw new InvalidOperationException(
            "AddRowLock needs an NpgsqlDataSource in the container: register one first, e.g. services.AddNpgsqlDataSource(connectionString) or services.AddSingleton(NpgsqlDataSource.Create(connectionString)).");
}
