using Microsoft.AspNetCore.Mvc.Testing;
using RowLock.Tests.Infrastructure;

namespace RowLock.WebSample.Tests;

/// <summary>The web sample started in memory against a fresh database of the shared test server.</summary>
public sealed class WebSampleApp : IAsyncLifetime
{
    private WebApplicationFactory<Program>? _factory;

    public DatabaseFixture Database { get; } = new();

    public HttpClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Database.InitializeAsync();
        _factory = new WebApplicationFactory<Program>().WithWebHostBuilder(host =>
        {
            host.UseSetting("ConnectionStrings:RowLock", Database.ConnectionString);
            host.UseSetting("Logging:LogLevel:Default", "Warning");
        });
        Client = _factory.CreateClient();
    }

    public async Task DisposeAsync()
    {
        Client?.Dispose();
        if (_factory is not null)
        {
            await _factory.DisposeAsync();
        }

        await Database.DisposeAsync();
    }
}
