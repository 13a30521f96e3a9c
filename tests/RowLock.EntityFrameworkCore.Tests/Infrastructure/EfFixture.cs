using Microsoft.EntityFrameworkCore;
using RowLock.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests.Infrastructure;

/// <summary>A fresh database per test class (the core's <see cref="DatabaseFixture"/>) with the shop schema created by EF.</summary>
public sealed class EfFixture : IAsyncLifetime
{
    public DatabaseFixture Database { get; } = new();

    public DbContextOptions<ShopContext> Options { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Database.InitializeAsync();
        Options = new DbContextOptionsBuilder<ShopContext>().UseNpgsql(Database.DataSource).UseRowLock().Options;
        await using var db = CreateContext();
        await db.Database.EnsureCreatedAsync();
    }

    public ShopContext CreateContext() => new(Options);

    /// <summary>A context factory for the unit-of-work runner: a new context per call.</summary>
    public IDbContextFactory<ShopContext> Factory => new Factory<ShopContext>(CreateContext);

    public Task DisposeAsync() => Database.DisposeAsync();
}

public sealed class Factory<T>(Func<T> create) : IDbContextFactory<T>
    where T : DbContext
{
    public T CreateDbContext() => create();
}
