using Microsoft.EntityFrameworkCore;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>WithRowLock always runs NOWAIT and timed locks in a savepoint: it refuses WithoutSavepoint() instead of ignoring it.</summary>
public sealed class WithoutSavepointRefusalTests(EfFixture ef) : IClassFixture<EfFixture>
{
    [Fact]
    public async Task WithRowLock_refuses_WithoutSavepoint_before_anything_is_sent_and_still_locks_with_the_savepoint()
    {
        await using var db = ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        var e = Assert.Throws<ArgumentException>(() => db.Orders.WithRowLock(RowLockClause.ForUpdate.NoWait().WithoutSavepoint()));
        Assert.Contains("WithRowLock does not support WithoutSavepoint()", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => db.Orders.WithRowLock(RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromSeconds(1)).WithoutSavepoint()));

        // The same query with the savepoint works, on a transaction nothing above aborted.
        var orders = await db.Orders.Where(o => o.Id > 0).WithRowLock(RowLockClause.ForUpdate.NoWait()).ToListAsync();
        Assert.NotNull(orders);
    }
}
