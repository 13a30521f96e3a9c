using Microsoft.EntityFrameworkCore;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;
using RowLock.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>Advisory locks on the context's transaction, with the core's try / wait / timeout semantics.</summary>
public sealed class AdvisoryLockTests(EfFixture ef) : IClassFixture<EfFixture>
{
    [Fact]
    public async Task One_of_many_contexts_gets_the_try_lock_and_it_is_released_with_the_transaction()
    {
        var key = AdvisoryLockKey.FromName("ef.try." + Guid.NewGuid());
        var decided = new AsyncBarrier(6);
        var results = await Workers.RaceAsync(6, async _ =>
        {
            await using var db = ef.CreateContext();
            await using var tx = await db.Database.BeginTransactionAsync();
            var mine = await db.Database.TryAcquireAdvisoryLockAsync(key);
            await decided.SignalAndWaitAsync();
            return mine;
        });

        Assert.Single(results, r => r);
        await using var after = ef.CreateContext();
        await using var afterTx = await after.Database.BeginTransactionAsync();
        Assert.True(await after.Database.TryAcquireAdvisoryLockAsync(key)); // every holder's transaction ended
    }

    [Fact]
    public async Task A_timed_wait_fails_with_LockNotAvailable_and_the_transaction_is_still_usable()
    {
        var key = AdvisoryLockKey.FromName("ef.wait." + Guid.NewGuid());
        await using var holder = ef.CreateContext();
        await using var holding = await holder.Database.BeginTransactionAsync();
        await holder.Database.AcquireAdvisoryLockAsync(key);

        await using var db = ef.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        await Assert.ThrowsAsync<LockNotAvailableException>(() => db.Database.AcquireAdvisoryLockAsync(key, TimeSpan.FromMilliseconds(100)));
        Assert.Equal("0", await db.Database.SqlQueryRaw<string>("SELECT current_setting('lock_timeout') AS \"Value\"").SingleAsync());

        var waiting = db.Database.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(30));
        await holding.CommitAsync();
        await waiting;
    }

    [Fact]
    public async Task Without_a_transaction_on_the_context_nothing_is_sent()
    {
        await using var db = ef.CreateContext();
        await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("x")));
        await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("x")));
    }
}
