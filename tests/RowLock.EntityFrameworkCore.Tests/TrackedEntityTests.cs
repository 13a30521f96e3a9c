using Microsoft.EntityFrameworkCore;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;
using RowLock.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>
/// EF returns an entity the context already tracks as it is (no merge option in EF Core 10): a locking query must refresh
/// such an entry with the values it read under the lock, and must refuse rather than overwrite an entry with local changes.
/// </summary>
public sealed class TrackedEntityTests(EfFixture ef) : IClassFixture<EfFixture>
{
    private Task<int> CounterAsync(int id) => ef.Database.ScalarAsync<int>($"SELECT \"Value\" FROM counters WHERE \"Id\" = {id}");

    [Fact]
    public async Task Read_then_lock_inside_the_runner_8_workers_x_25_increments_end_at_exactly_200()
    {
        await ef.Database.ExecuteAsync("DELETE FROM counters WHERE \"Id\" = 10; INSERT INTO counters VALUES (10, 0)");
        var runner = new DbContextTransactionRunner<ShopContext>(ef.Factory);

        await Workers.RaceAsync(8, async _ =>
        {
            for (var i = 0; i < 25; i++)
            {
                await runner.RunAsync(async (db, ct) =>
                {
                    var unlocked = await db.Counters.SingleAsync(c => c.Id == 10, ct); // an unlocked read: the context now tracks the counter
                    var counter = await db.Counters.Where(c => c.Id == 10).WithRowLock(RowLockClause.ForUpdate).SingleAsync(ct);
                    Assert.Same(unlocked, counter);
                    counter.Value++;
                });
            }
        });

        Assert.Equal(200, await CounterAsync(10));
    }

    [Fact]
    public async Task A_tracked_unchanged_entity_comes_back_with_the_values_read_under_the_lock_and_stays_unchanged()
    {
        await ef.Database.ExecuteAsync("DELETE FROM counters WHERE \"Id\" = 11; INSERT INTO counters VALUES (11, 0)");
        await using var db = ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        var before = await db.Counters.SingleAsync(c => c.Id == 11);
        await ef.Database.ExecuteAsync("UPDATE counters SET \"Value\" = 5 WHERE \"Id\" = 11"); // another transaction commits

        var locked = await db.Counters.Where(c => c.Id == 11).WithRowLock(RowLockClause.ForUpdate.NoWait()).SingleAsync();

        Assert.Same(before, locked);
        Assert.Equal(5, locked.Value);
        Assert.Equal(EntityState.Unchanged, db.Entry(locked).State);
        Assert.Equal(5, db.Entry(locked).Property(c => c.Value).OriginalValue);
    }

    [Fact]
    public async Task A_tracked_entity_with_local_changes_is_refused_and_keeps_its_changes()
    {
        await ef.Database.ExecuteAsync("DELETE FROM counters WHERE \"Id\" = 12; INSERT INTO counters VALUES (12, 0)");
        await using var db = ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        var counter = await db.Counters.SingleAsync(c => c.Id == 12);
        counter.Value = 41; // a local change, not detected yet (snapshot tracking)

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Counters.Where(c => c.Id == 12).WithRowLock(RowLockClause.ForUpdate).ToListAsync());

        Assert.Contains("local changes", e.Message, StringComparison.Ordinal);
        Assert.Equal(41, counter.Value);
        Assert.Equal(EntityState.Modified, db.Entry(counter).State);
        await db.SaveChangesAsync(); // the transaction is usable
        await tx.CommitAsync();
        Assert.Equal(41, await CounterAsync(12));
    }

    [Fact]
    public async Task With_NoWait_a_refused_tracked_entity_keeps_its_state_and_the_transaction_goes_on()
    {
        await ef.Database.ExecuteAsync("DELETE FROM counters WHERE \"Id\" = 13; INSERT INTO counters VALUES (13, 0)");
        await using var db = ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        var counter = await db.Counters.SingleAsync(c => c.Id == 13);
        db.Remove(counter);

        await Assert.ThrowsAsync<InvalidOperationException>(() => db.Counters.Where(c => c.Id == 13).WithRowLock(RowLockClause.ForUpdate.NoWait()).ToListAsync());

        Assert.Equal(EntityState.Deleted, db.Entry(counter).State);
        await db.SaveChangesAsync(); // the transaction is usable: the delete goes through
        await tx.CommitAsync();
        Assert.Equal(0L, await ef.Database.ScalarAsync<long>("SELECT count(*) FROM counters WHERE \"Id\" = 13"));
    }
}
