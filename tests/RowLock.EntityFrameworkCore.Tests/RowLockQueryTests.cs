using Microsoft.EntityFrameworkCore;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>WithRowLock against the real server: the rows are locked (a second connection sees it), NOWAIT and timeouts keep the core's semantics.</summary>
public sealed class RowLockQueryTests : IClassFixture<EfFixture>, IAsyncLifetime
{
    private readonly EfFixture _ef;

    public RowLockQueryTests(EfFixture ef) => _ef = ef;

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

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task The_rows_the_query_returns_are_locked_until_the_transaction_ends(bool async, bool noTracking)
    {
        await using var db = _ef.CreateContext();
        await using (var tx = await db.Database.BeginTransactionAsync())
        {
            var query = db.Orders.Where(o => o.Total >= 20).OrderBy(o => o.Id).Skip(1).Take(2);
            query = noTracking ? query.AsNoTracking() : query;
            query = query.WithRowLock(RowLockClause.ForUpdate);
            var rows = async ? await query.ToListAsync() : query.ToList();

            Assert.Equal([3L, 4L], rows.Select(r => r.Id));
            Assert.True(await _ef.Database.IsRowLockedAsync("orders", 3));
            Assert.True(await _ef.Database.IsRowLockedAsync("orders", 4));
            Assert.False(await _ef.Database.IsRowLockedAsync("orders", 1)); // filtered out by Where

            // PostgreSQL locks rows below OFFSET: the row Skip(1) skipped is locked too (documented in docs/ef-core.md).
            Assert.True(await _ef.Database.IsRowLockedAsync("orders", 2));
            await tx.CommitAsync();
        }

        Assert.False(await _ef.Database.IsRowLockedAsync("orders", 3));
    }

    [Fact]
    public async Task Include_of_a_collection_locks_the_orders_and_the_lines_whether_or_not_AsSplitQuery_is_written()
    {
        await using var db = _ef.CreateContext();
        await using (var tx = await db.Database.BeginTransactionAsync())
        {
            var order = await db.Orders.Include(o => o.Lines).Where(o => o.Id == 1).WithRowLock(RowLockClause.ForUpdate).SingleAsync();
            Assert.Single(order.Lines);
            Assert.True(await _ef.Database.IsRowLockedAsync("orders", 1));
            Assert.True(await _ef.Database.IsRowLockedAsync("order_lines", order.Lines[0].Id)); // made a split query: the lines' statement locks them
        }

        await using (var tx = await db.Database.BeginTransactionAsync())
        {
            var order = await db.Orders.Include(o => o.Lines).AsSplitQuery().Where(o => o.Id == 2).WithRowLock(RowLockClause.ForUpdate.NoWait()).SingleAsync();
            Assert.True(await _ef.Database.IsRowLockedAsync("orders", 2));
            Assert.True(await _ef.Database.IsRowLockedAsync("order_lines", order.Lines[0].Id));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task NoWait_on_a_held_row_throws_LockNotAvailable_and_the_transaction_goes_on_to_SaveChanges(bool async)
    {
        await using var holder = await _ef.Database.HoldAsync("orders", 2);
        await using var db = _ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        var query = db.Orders.Where(o => o.Id == 2).WithRowLock(RowLockClause.ForUpdate.NoWait());

        var e = async
            ? await Assert.ThrowsAsync<LockNotAvailableException>(() => query.ToListAsync())
            : Assert.Throws<LockNotAvailableException>(() => query.ToList());
        Assert.Equal(LockNotAvailableException.RowMessage, e.UserMessage);

        // The transaction is usable (rolled back to the savepoint), including the next command on the same connection.
        var other = await db.Orders.SingleAsync(o => o.Id == 1);
        other.Total = 999;
        await db.SaveChangesAsync();
        await tx.CommitAsync();
        Assert.Equal(999, await _ef.Database.ScalarAsync<int>("SELECT \"Total\" FROM orders WHERE \"Id\" = 1"));
    }

    [Fact]
    public async Task A_conflict_on_a_later_row_surfaces_from_Read_and_leaves_nothing_tracked()
    {
        await using var holder = await _ef.Database.HoldAsync("orders", 3);
        await using var db = _ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();

        // Rows 1 and 2 are locked and materialized before row 3 fails.
        await Assert.ThrowsAsync<LockNotAvailableException>(() => db.Orders.OrderBy(o => o.Id).WithRowLock(RowLockClause.ForUpdate.NoWait()).ToListAsync());

        Assert.Empty(db.ChangeTracker.Entries());
        Assert.False(await _ef.Database.IsRowLockedAsync("orders", 1)); // the savepoint rollback released them
        Assert.Equal(4, await db.Orders.CountAsync());
    }

    [Fact]
    public async Task A_timed_lock_fails_after_its_timeout_and_the_callers_lock_timeout_is_back()
    {
        await using var holder = await _ef.Database.HoldAsync("orders", 1);
        await using var db = _ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        await db.Database.ExecuteSqlRawAsync("SET LOCAL lock_timeout = '7s'");

        await Assert.ThrowsAsync<LockNotAvailableException>(() =>
            db.Orders.Where(o => o.Id == 1).WithRowLock(RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromMilliseconds(100))).ToListAsync());
        Assert.Equal("7s", await db.Database.SqlQueryRaw<string>("SELECT current_setting('lock_timeout') AS \"Value\"").SingleAsync());

        // And after a timed lock that succeeds.
        var rows = await db.Orders.Where(o => o.Id == 2).WithRowLock(RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromMilliseconds(100))).ToListAsync();
        Assert.Single(rows);
        Assert.Equal("7s", await db.Database.SqlQueryRaw<string>("SELECT current_setting('lock_timeout') AS \"Value\"").SingleAsync());
        Assert.True(await _ef.Database.IsRowLockedAsync("orders", 2));
    }

    [Fact]
    public async Task Skip_locked_leaves_held_rows_out()
    {
        await using var holder = await _ef.Database.HoldAsync("orders", 1, 3);
        await using var db = _ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        var rows = await db.Orders.OrderBy(o => o.Id).WithRowLock(RowLockClause.ForUpdate.SkipLocked()).ToListAsync();
        Assert.Equal([2L, 4L], rows.Select(r => r.Id));
    }

    [Fact]
    public async Task A_waiting_lock_waits_for_the_holder_and_then_reads_its_committed_value()
    {
        await using var db = _ef.CreateContext();
        var holder = await _ef.Database.HoldAsync("orders", 4);
        await using var tx = await db.Database.BeginTransactionAsync();
        var waiting = db.Orders.Where(o => o.Id == 4).WithRowLock(RowLockClause.ForUpdate).SingleAsync();
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted);
        await holder.DisposeAsync();
        Assert.Equal(4, (await waiting.WaitAsync(TimeSpan.FromSeconds(30))).Id);
    }

    [Fact]
    public async Task A_compiled_query_locks_too()
    {
        var byId = EF.CompileAsyncQuery((ShopContext d, long id) => d.Orders.Where(o => o.Id == id).WithRowLock(RowLockClause.ForUpdate.NoWait()));
        await using var db = _ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        await foreach (var _ in byId(db, 2))
        {
        }

        Assert.True(await _ef.Database.IsRowLockedAsync("orders", 2));
        await using var holder = await _ef.Database.HoldAsync("orders", 3);
        await Assert.ThrowsAsync<LockNotAvailableException>(async () =>
        {
            await foreach (var _ in byId(db, 3))
            {
            }
        });
    }
}
