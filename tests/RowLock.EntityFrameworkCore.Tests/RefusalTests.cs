using Microsoft.EntityFrameworkCore;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>Queries PostgreSQL cannot lock, and locks without a transaction, are refused before anything is sent.</summary>
public sealed class RefusalTests(EfFixture ef) : IClassFixture<EfFixture>
{
    public static TheoryData<string> Unlockable => ["GroupBy", "Distinct", "Union", "Concat", "Count", "Sum", "Max", "Any"];

    [Theory]
    [MemberData(nameof(Unlockable))]
    public async Task A_query_PostgreSQL_cannot_lock_throws_before_it_is_sent(string shape)
    {
        await using var db = ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        var locked = db.Orders.WithRowLock(RowLockClause.ForUpdate);
        Func<Task> run = shape switch
        {
            "GroupBy" => () => locked.GroupBy(o => o.Customer).Select(g => new { g.Key, N = g.Count() }).ToListAsync(),
            "Distinct" => () => locked.Select(o => o.Customer).Distinct().ToListAsync(),
            "Union" => () => locked.Union(db.Orders).ToListAsync(),
            "Concat" => () => locked.Concat(db.Orders).ToListAsync(),
            "Count" => () => locked.CountAsync(),
            "Sum" => () => locked.SumAsync(o => o.Total),
            "Max" => () => locked.Select(o => o.Total).DefaultIfEmpty().MaxAsync(),
            _ => () => locked.AnyAsync(o => o.Total > 0),
        };
        var e = await Assert.ThrowsAsync<InvalidOperationException>(run);
        Assert.Contains("WithRowLock cannot lock", e.Message, StringComparison.Ordinal);

        // Nothing reached the server: the transaction is not aborted, as a PostgreSQL error would have left it.
        Assert.Equal(1, await db.Database.SqlQueryRaw<int>("SELECT 1 AS \"Value\"").SingleAsync());
    }

    [Fact]
    public async Task Locking_without_a_transaction_is_refused_because_autocommit_would_release_the_lock_at_once()
    {
        await using var db = ef.CreateContext();
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Orders.WithRowLock(RowLockClause.ForUpdate).ToListAsync());
        Assert.Contains("needs a transaction", e.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => db.Orders.WithRowLock(RowLockClause.ForUpdate.NoWait()).ToList());
    }

    [Fact]
    public async Task Locking_the_nullable_side_of_an_Include_is_refused()
    {
        await using var db = ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Orders.Include(o => o.Lines).AsSingleQuery().WithRowLock(RowLockClause.ForUpdate.Of("order_lines")).ToListAsync());
        Assert.Contains("nullable side", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_non_composed_FromSql_is_refused()
    {
        await using var db = ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        await Assert.ThrowsAsync<InvalidOperationException>(() => db.Orders.FromSqlRaw("SELECT * FROM orders").WithRowLock(RowLockClause.ForUpdate).ToListAsync());
    }

    [Fact]
    public void Without_UseRowLock_the_query_fails_instead_of_silently_not_locking()
    {
        using var db = new ShopContext(new DbContextOptionsBuilder<ShopContext>().UseNpgsql(ef.Database.DataSource).Options);
        Assert.Throws<InvalidOperationException>(() => db.Orders.WithRowLock(RowLockClause.ForUpdate).ToQueryString());
    }
}
