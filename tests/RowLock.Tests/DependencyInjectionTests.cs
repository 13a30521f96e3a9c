using System.Data;
using Dapper;
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
        try
        {
            await RunThroughContainerAsync(provider);
        }
        finally
        {
            RowLockLogging.LoggerFactory = Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance;
        }
    }

    private static async Task RunThroughContainerAsync(IServiceProvider provider)
    {
        var runner = provider.GetRequiredService<TransactionRunner>();
        Assert.Same(runner, provider.GetRequiredService<TransactionRunner>());
        Assert.Equal(IsolationLevel.RepeatableRead, runner.Options.IsolationLevel);
        Assert.Equal(3, runner.Options.Retry.MaxRetryAttempts);
        Assert.Same(provider.GetRequiredService<ILoggerFactory>(), RowLockLogging.LoggerFactory);

        var isolation = await runner.RunAsync((tx, ct) => tx.Connection!.ExecuteScalarAsync<string>("SHOW transaction_isolation", transaction: tx));
        Assert.Equal("repeatable read", isolation);
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
