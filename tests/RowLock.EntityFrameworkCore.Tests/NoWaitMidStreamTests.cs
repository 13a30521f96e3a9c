using Microsoft.EntityFrameworkCore;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>
/// NOWAIT when the conflict comes after the caller stopped reading: PostgreSQL locks rows as it returns them, and leaving the
/// loop early drains the rest of the result, where a later row's 55P03 arrives. It must surface as the typed exception,
/// with the savepoint rolled back, the transaction usable and the tracker matching what the exception says.
/// </summary>
public sealed class NoWaitMidStreamTests : IClassFixture<EfFixture>, IAsyncLifetime
{
    private readonly EfFixture _ef;

    public NoWaitMidStreamTests(EfFixture ef) => _ef = ef;

    public async Task InitializeAsync()
    {
        await _ef.Database.ExecuteAsync("TRUNCATE orders, order_lines RESTART IDENTITY");
        await using var db = _ef.CreateContext();
        for (var i = 1; i <= 4; i++)
        {
            db.Orders.Add(new Order { Customer = "c" + i, Total = 10 * i, Lines = [new OrderLine { Qty = i }] });
        }

        await db.SaveChangesAsync();
    }

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task Leaving_an_async_loop_early_surfaces_a_later_rows_conflict_as_LockNotAvailable_and_the_transaction_goes_on()
    {
        await using var holder = await _ef.Database.HoldAsync("orders", 3);
        await using var db = _ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();

        var e = await Assert.ThrowsAsync<LockNotAvailableException>(async () =>
        {
            await foreach (var order in db.Orders.OrderBy(o => o.Id).WithRowLock(RowLockClause.ForUpdate.NoWait()).AsAsyncEnumerable())
            {
                Assert.Equal(1, order.Id);
                break; // the rest of the result (rows 2, 3, 4) is drained on dispose: row 3 is held
            }
        });

        Assert.Equal(LockNotAvailableException.RowMessage, e.UserMessage);
        Assert.Empty(db.ChangeTracker.Entries()); // as the exception says: nothing the query materialized stays tracked
        Assert.False(await _ef.Database.IsRowLockedAsync("orders", 1)); // rolled back to the savepoint: order 1 is not locked either
        var order2 = await db.Orders.SingleAsync(o => o.Id == 2); // the transaction is not aborted (no 25P02)
        order2.Total = 222;
        await db.SaveChangesAsync();
        await tx.CommitAsync();
        Assert.Equal(222, await _ef.Database.ScalarAsync<int>("SELECT \"Total\" FROM orders WHERE \"Id\" = 2"));
    }

    [Fact]
    public async Task Leaving_a_sync_loop_early_does_the_same()
    {
        await using var holder = await _ef.Database.HoldAsync("orders", 4);
        await using var db = _ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();

        Assert.Throws<LockNotAvailableException>(() =>
        {
            foreach (var order in db.Orders.OrderBy(o => o.Id).WithRowLock(RowLockClause.ForUpdate.NoWait()))
            {
                break;
            }
        });

        Assert.Empty(db.ChangeTracker.Entries());
        Assert.Equal(4, db.Orders.Count());
    }

    [Fact]
    public async Task A_conflict_on_the_second_statement_of_a_split_query_leaves_exactly_what_the_exception_says()
    {
        await using var db = _ef.CreateContext();
        var lineOf2 = await db.OrderLines.Where(l => l.OrderId == 2).Select(l => l.Id).SingleAsync();
        await using var holder = await _ef.Database.HoldAsync("order_lines", lineOf2);
        await using var tx = await db.Database.BeginTransactionAsync();

        var e = await Assert.ThrowsAsync<LockNotAvailableException>(() =>
            db.Orders.Include(o => o.Lines).Where(o => o.Id == 2).WithRowLock(RowLockClause.ForUpdate.NoWait()).ToListAsync());

        // The first statement locked order 2 and released its savepoint; the exception says so, and that is the state.
        Assert.Contains("earlier statements of the query locked stay locked and tracked", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(db.ChangeTracker.Entries<OrderLine>(), _ => true);
        Assert.Equal(1, await db.Database.SqlQueryRaw<int>("SELECT 1 AS \"Value\"").SingleAsync()); // the transaction is usable
        await tx.CommitAsync();
    }
}
