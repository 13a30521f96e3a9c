using System.Data;
using Dapper;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

public sealed class DependencyInjectionTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task AddRowLock_registers_a_runner_on_the_containers_data_source()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton(db.DataSource);
        services.AddRowLock(options =>
        {
            options.IsolationLevel = IsolationLevel.RepeatableRead;
            options.Retry.MaxRetryAttempts = 3;
        });
        await using var provider = services.BuildServiceProvider();
        await RunThroughContainerAsync(provider);
    }

    [Fact]
    public async Task Advisory_locks_from_the_container_log_through_it_and_a_disposed_container_affects_no_other()
    {
        var first = new RecordingLoggerProvider();
        var firstProvider = BuildProvider(first);
        var key = AdvisoryLockKey.FromName("di." + Guid.NewGuid());
        await using (var handle = await firstProvider.GetRequiredService<AdvisoryLocks>().AcquireAsync(key))
        {
            Assert.Same(firstProvider.GetRequiredService<AdvisoryLocks>(), firstProvider.GetRequiredService<AdvisoryLocks>());
        }

        Assert.Contains(first.Entries, e => e.Category == "RowLock.AdvisoryLocks" && e.EventId == RowLockEventIds.AdvisoryLockAcquired);
        var runner = firstProvider.GetRequiredService<TransactionRunner>();
        await firstProvider.DisposeAsync(); // 0.1.0 kept this container's logger factory in a static: the next call threw

        var second = new RecordingLoggerProvider();
        await using var secondProvider = BuildProvider(second);
        await using (await secondProvider.GetRequiredService<AdvisoryLocks>().AcquireAsync(key))
        {
        }

        await using (await db.DataSource.AcquireAdvisoryLockAsync(key))
        {
            // The extension methods own no logger: nothing global to go stale.
        }

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        Assert.True(await tx.TryAcquireAdvisoryLockAsync(key));
        await tx.RollbackAsync();

        Assert.Contains(second.Entries, e => e.EventId == RowLockEventIds.AdvisoryLockReleased);
        Assert.Single(first.Entries, e => e.EventId == RowLockEventIds.AdvisoryLockReleased); // only its own handle's release
        _ = runner;
    }

    private ServiceProvider BuildProvider(RecordingLoggerProvider logs)
    {
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(logs));
        services.AddSingleton(db.DataSource);
        services.AddRowLock();
        return services.BuildServiceProvider();
    }

    private static async Task RunThroughContainerAsync(IServiceProvider provider)
    {
        var runner = provider.GetRequiredService<TransactionRunner>();
        Assert.Same(runner, provider.GetRequiredService<TransactionRunner>());
        Assert.Equal(IsolationLevel.RepeatableRead, runner.Options.IsolationLevel);
        Assert.Equal(3, runner.Options.Retry.MaxRetryAttempts);

        var isolation = await runner.RunAsync((tx, ct) => tx.Connection!.ExecuteScalarAsync<string>("SHOW transaction_isolation", transaction: tx));
        Assert.Equal("repeatable read", isolation);
    }

    [Fact]
    public void AddRowLock_binds_the_runner_options_from_configuration()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["RowLock:IsolationLevel"] = "Serializable",
            ["RowLock:Retry:MaxRetryAttempts"] = "4",
            ["RowLock:Retry:Delay"] = "00:00:00.020",
            ["RowLock:Retry:MaxDelay"] = "00:00:02",
            ["RowLock:Retry:UseJitter"] = "false",
            ["RowLock:Retry:RetryOnLockNotAvailable"] = "true",
        }).Build();
        var services = new ServiceCollection();
        services.AddSingleton(db.DataSource);
        services.AddRowLock(configuration.GetSection("RowLock"), options => options.Retry.MaxDelay = TimeSpan.FromSeconds(3));
        using var provider = services.BuildServiceProvider();

        var options = provider.GetRequiredService<TransactionRunner>().Options;
        Assert.Equal(IsolationLevel.Serializable, options.IsolationLevel);
        Assert.Equal(4, options.Retry.MaxRetryAttempts);
        Assert.Equal(TimeSpan.FromMilliseconds(20), options.Retry.Delay);
        Assert.Equal(TimeSpan.FromSeconds(3), options.Retry.MaxDelay); // the delegate runs after binding
        Assert.False(options.Retry.UseJitter);
        Assert.True(options.Retry.RetryOnLockNotAvailable);
        Assert.True(options.Retry.ShouldRetry(new LockNotAvailableException())); // the predicate survives binding
    }

    [Fact]
    public void Out_of_range_configuration_fails_when_the_runner_is_built_with_pollys_message()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["RowLock:Retry:MaxRetryAttempts"] = "0",
        }).Build();
        var services = new ServiceCollection();
        services.AddSingleton(db.DataSource);
        services.AddRowLock(configuration.GetSection("RowLock"));
        using var provider = services.BuildServiceProvider();
        // Validated as options now (ValidateOnStart), so the error is the options pattern's, still with Polly's message.
        var error = Assert.Throws<Microsoft.Extensions.Options.OptionsValidationException>(() => provider.GetRequiredService<TransactionRunner>());
        Assert.Contains("The field MaxRetryAttempts must be between 1 and 2147483647.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AddRowLock_without_a_data_source_says_what_to_register()
    {
        var services = new ServiceCollection();
        services.AddRowLock();
        using var provider = services.BuildServiceProvider();
        var error = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<TransactionRunner>());
        Assert.StartsWith("AddRowLock needs an NpgsqlDataSource in the container", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AddRowLock_rejects_a_null_collection() =>
        Assert.Throws<ArgumentNullException>(() => RowLockServiceCollectionExtensions.AddRowLock(null!));
}
