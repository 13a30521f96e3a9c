using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using RowLock;
using RowLock.EntityFrameworkCore;
using RowLock.WebSample;

var builder = WebApplication.CreateBuilder(args);

// One pooled data source for the whole app; RowLock's runner and advisory locks use it.
builder.Services.AddNpgsqlDataSource(builder.Configuration.GetConnectionString("RowLock")
    ?? throw new InvalidOperationException("Set ConnectionStrings:RowLock (appsettings.json or ConnectionStrings__RowLock)."));
builder.Services.AddRowLock(builder.Configuration.GetSection("RowLock"));

// EF Core: a context factory on the same data source, and the EF unit-of-work runner with the same options.
builder.Services.AddDbContextFactory<ShopDb>((services, options) =>
    options.UseNpgsql(services.GetRequiredService<NpgsqlDataSource>()).UseRowLock());
builder.Services.AddSingleton(services => new DbContextTransactionRunner<ShopDb>(
    services.GetRequiredService<IDbContextFactory<ShopDb>>(),
    services.GetRequiredService<Microsoft.Extensions.Options.IOptions<TransactionRunnerOptions>>().Value,
    services.GetService<ILogger<DbContextTransactionRunner<ShopDb>>>()));

// Readiness (not liveness): a long lock wait makes the instance not ready, it does not make it dead.
builder.Services.AddHealthChecks().AddRowLockLockWaits(tags: ["ready"]);

builder.Services.AddOpenTelemetry()
    .WithMetrics(metrics => metrics.AddRowLockInstrumentation().AddPrometheusExporter())
    .WithTracing(tracing => tracing.AddRowLockInstrumentation());

var app = builder.Build();

await Schema.EnsureCreatedAsync(app.Services.GetRequiredService<NpgsqlDataSource>());

app.MapStockEndpoints();
app.MapJobEndpoints();
app.MapOrderEndpoints();
app.MapDocumentEndpoints();
app.MapGet("/locks", LockEndpoints.GetLockTreeAsync);
app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = check => check.Tags.Contains("ready") });
app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false });
app.MapPrometheusScrapingEndpoint();

app.Run();

/// <summary>The entry point, public so integration tests can start the app with WebApplicationFactory.</summary>
public partial class Program;
