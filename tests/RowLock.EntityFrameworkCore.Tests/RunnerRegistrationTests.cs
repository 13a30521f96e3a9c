using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary><c>AddDbContextTransactionRunner&lt;TContext&gt;()</c>: the EF runner from the options <c>AddRowLock</c> binds, in one call.</summary>
public sealed class RunnerRegistrationTests(EfFixture ef) : IClassFixture<EfFixture>
{
    [Fact]
    public async Task The_ef_runner_is_registered_from_the_same_configuration_as_the_core_runner_and_runs_exact_increments()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["RowLock:IsolationLevel"] = "RepeatableRead",
            ["RowLock:Retry:MaxRetryAttempts"] = "50",
        }).Build();
        var services = new ServiceCollection();
        services.AddSingleton(ef.Database.DataSource);
        services.AddDbContextFactory<ShopContext>(o => o.UseNpgsql(ef.Database.DataSource).UseRowLock());
        services.AddRowLock(configuration.GetSection("RowLock")).AddDbContextTransactionRunner<ShopContext>();
        await using var provider = services.BuildServiceProvider();
        provider.GetRequiredService<IStartupValidator>().Validate();

        var runner = provider.GetRequiredService<DbContextTransactionRunner<ShopContext>>();
        Assert.Same(runner, provider.GetRequiredService<DbContextTransactionRunner<ShopContext>>());
        Assert.Equal(System.Data.IsolationLevel.RepeatableRead, runner.Options.IsolationLevel);
        Assert.Equal(50, runner.Options.Retry.MaxRetryAttempts);
        Assert.Equal(runner.Options.Retry.MaxRetryAttempts, provider.GetRequiredService<TransactionRunner>().Options.Retry.MaxRetryAttempts);

        // Under REPEATABLE READ without a lock, concurrent increments conflict (40001) and the runner re-runs them whole.
        await ef.Database.ExecuteAsync("DELETE FROM counters; INSERT INTO counters VALUES (1, 0)");
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            for (var i = 0; i < 5; i++)
            {
                await runner.RunAsync(async (db, ct) => (await db.Counters.SingleAsync(c => c.Id == 1, ct)).Value++);
            }
        }))).WaitAsync(TimeSpan.FromSeconds(120));
        Assert.Equal(40, await ef.Database.ScalarAsync<int>("SELECT \"Value\" FROM counters WHERE \"Id\" = 1"));
    }

    [Fact]
    public async Task A_bad_value_fails_the_start_for_the_ef_runner_too()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["RowLock:Retry:MaxRetryAttempts"] = "0" }).Build();
        var services = new ServiceCollection();
        services.AddSingleton(ef.Database.DataSource);
        services.AddDbContextFactory<ShopContext>(o => o.UseNpgsql(ef.Database.DataSource).UseRowLock());
        services.AddRowLock(configuration.GetSection("RowLock")).AddDbContextTransactionRunner<ShopContext>();
        await using var provider = services.BuildServiceProvider();

        Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IStartupValidator>().Validate());
        Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<DbContextTransactionRunner<ShopContext>>());
    }

    [Fact]
    public async Task Without_a_context_factory_the_error_says_what_to_register()
    {
        var services = new ServiceCollection();
        services.AddDbContextTransactionRunner<ShopContext>();
        await using var provider = services.BuildServiceProvider();

        var error = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<DbContextTransactionRunner<ShopContext>>());
        Assert.StartsWith("AddDbContextTransactionRunner<ShopContext> needs an IDbContextFactory<ShopContext>", error.Message, StringComparison.Ordinal);
    }
}
