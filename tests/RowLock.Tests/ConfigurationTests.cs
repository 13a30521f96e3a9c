using System.Data;
using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Polly;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// <c>AddRowLock(IConfiguration)</c> as docs/configuration.md shows it: the appsettings.json there binds, a misspelt key is
/// an error, and bad values stop the host at start (<see cref="IStartupValidator"/>, what a host runs in StartAsync).
/// </summary>
public sealed class ConfigurationTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task The_appsettings_json_of_the_guide_binds_to_the_defaults_and_the_runner_runs()
    {
        await using var provider = Build(DocumentedJson());

        provider.GetRequiredService<IStartupValidator>().Validate();
        var options = provider.GetRequiredService<TransactionRunner>().Options;
        var defaults = new TransactionRunnerOptions();
        Assert.Equal(defaults.IsolationLevel, options.IsolationLevel);
        Assert.Equal(defaults.Retry.MaxRetryAttempts, options.Retry.MaxRetryAttempts);
        Assert.Equal(defaults.Retry.Delay, options.Retry.Delay);
        Assert.Equal(defaults.Retry.MaxDelay, options.Retry.MaxDelay);
        Assert.Equal(DelayBackoffType.Exponential, options.Retry.BackoffType);
        Assert.Equal(defaults.Retry.UseJitter, options.Retry.UseJitter);
        Assert.Equal(defaults.Retry.RetryOnConnectionLoss, options.Retry.RetryOnConnectionLoss);
        Assert.Equal(defaults.Retry.RetryOnLockNotAvailable, options.Retry.RetryOnLockNotAvailable);
        Assert.Equal(1, await provider.GetRequiredService<TransactionRunner>().RunAsync((tx, ct) => Task.FromResult(1)));
    }

    [Theory]
    [InlineData("""{ "RowLock": { "Retry": { "MaxRetryAttemps": 5 } } }""", "MaxRetryAttemps")]
    [InlineData("""{ "RowLock": { "IsolationLevl": "Serializable" } }""", "IsolationLevl")]
    [InlineData("""{ "RowLock": { "Retries": { "MaxRetryAttempts": 5 } } }""", "Retries")]
    public async Task A_misspelt_key_fails_the_start_naming_the_key(string json, string key)
    {
        await using var provider = Build(json);

        var error = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<IStartupValidator>().Validate());
        Assert.Contains($"'{key}'", error.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<TransactionRunner>()); // and without a host, at first use
    }

    [Fact]
    public async Task An_out_of_range_value_fails_the_start_with_pollys_message_before_any_runner_is_built()
    {
        await using var provider = Build("""{ "RowLock": { "Retry": { "MaxRetryAttempts": 0 } } }""");

        var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IStartupValidator>().Validate());
        Assert.Contains("The field MaxRetryAttempts must be between 1 and 2147483647.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_isolation_level_postgresql_does_not_have_fails_the_start()
    {
        await using var provider = Build("""{ "RowLock": { "IsolationLevel": "Chaos" } }""");

        var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IStartupValidator>().Validate());
        Assert.Contains("IsolationLevel 'Chaos' is not one PostgreSQL offers", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Options_set_in_code_are_validated_at_start_too()
    {
        var services = new ServiceCollection();
        services.AddSingleton(db.DataSource);
        services.AddRowLock(o => o.Retry.MaxDelay = TimeSpan.FromDays(-1));
        await using var provider = services.BuildServiceProvider();

        var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IStartupValidator>().Validate());
        Assert.Contains("MaxDelay", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Valid_settings_from_json_reach_the_runner()
    {
        await using var provider = Build("""{ "RowLock": { "IsolationLevel": "RepeatableRead", "Retry": { "MaxRetryAttempts": 4, "Delay": "00:00:00.020", "BackoffType": "Linear" } } }""");

        provider.GetRequiredService<IStartupValidator>().Validate();
        var options = provider.GetRequiredService<TransactionRunner>().Options;
        Assert.Equal(IsolationLevel.RepeatableRead, options.IsolationLevel);
        Assert.Equal(4, options.Retry.MaxRetryAttempts);
        Assert.Equal(TimeSpan.FromMilliseconds(20), options.Retry.Delay);
        Assert.Equal(DelayBackoffType.Linear, options.Retry.BackoffType);
    }

    private ServiceProvider Build(string json)
    {
        var configuration = new ConfigurationBuilder().AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(json))).Build();
        var services = new ServiceCollection();
        services.AddSingleton(db.DataSource);
        services.AddRowLock(configuration.GetSection("RowLock"));
        return services.BuildServiceProvider();
    }

    /// <summary>The ```json block of docs/configuration.md, as a reader pastes it into appsettings.json.</summary>
    private static string DocumentedJson()
    {
        var guide = File.ReadAllText(Path.Combine(ReadmeSnippets.RepositoryRoot, "docs", "configuration.md")).ReplaceLineEndings("\n");
        var start = guide.IndexOf("```json\n", StringComparison.Ordinal) + "```json\n".Length;
        return guide[start..guide.IndexOf("```", start, StringComparison.Ordinal)];
    }
}
