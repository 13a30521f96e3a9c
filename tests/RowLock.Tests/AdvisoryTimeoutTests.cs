using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>A timeout means the same in every advisory entry point: zero does not wait, null or infinite waits, negative is refused.</summary>
public sealed class AdvisoryTimeoutTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static AdvisoryLockKey UniqueKey() => AdvisoryLockKey.FromName("timeout-" + Guid.NewGuid());

    private async Task<long> HoldersAsync(AdvisoryLockKey key) =>
        await db.ScalarAsync<long>($"SELECT count(*) FROM pg_locks WHERE {key.PgLocksPredicate} AND granted");

    /// <summary>Every entry point, as "take the lock with this timeout; true when granted, false when refused without throwing".</summary>
    private IEnumerable<(string Name, Func<AdvisoryLockKey, TimeSpan?, Task<bool>> Take)> EntryPoints()
    {
        var service = new AdvisoryLocks(db.DataSource);
        yield return ("dataSource.TryAcquireAdvisoryLockAsync", (k, t) => GrantedOrNull(db.DataSource.TryAcquireAdvisoryLockAsync(k, t ?? Timeout.InfiniteTimeSpan)));
        yield return ("dataSource.AcquireAdvisoryLockAsync", (k, t) => Granted(db.DataSource.AcquireAdvisoryLockAsync(k, t)));
        yield return ("dataSource.TryAcquireAdvisoryLockInTransactionAsync", (k, t) => GrantedOrNull(db.DataSource.TryAcquireAdvisoryLockInTransactionAsync(k, t ?? Timeout.InfiniteTimeSpan)));
        yield return ("dataSource.AcquireAdvisoryLockInTransactionAsync", (k, t) => Granted(db.DataSource.AcquireAdvisoryLockInTransactionAsync(k, t)));
        yield return ("AdvisoryLocks.TryAcquireAsync", (k, t) => GrantedOrNull(service.TryAcquireAsync(k, t ?? Timeout.InfiniteTimeSpan)));
        yield return ("AdvisoryLocks.AcquireAsync", (k, t) => Granted(service.AcquireAsync(k, t)));
        yield return ("AdvisoryLocks.TryAcquireInTransactionAsync", (k, t) => GrantedOrNull(service.TryAcquireInTransactionAsync(k, t ?? Timeout.InfiniteTimeSpan)));
        yield return ("AdvisoryLocks.AcquireInTransactionAsync", (k, t) => Granted(service.AcquireInTransactionAsync(k, t)));
        yield return ("transaction.AcquireAdvisoryLockAsync", (k, t) => InTransaction(tx => tx.AcquireAdvisoryLockAsync(k, t)));
    }

    private static async Task<bool> GrantedOrNull(Task<AdvisoryLockHandle?> acquire)
    {
        var handle = await acquire;
        if (handle is null)
        {
            return false;
        }

        await handle.DisposeAsync();
        return true;
    }

    private static async Task<bool> Granted(Task<AdvisoryLockHandle> acquire)
    {
        try
        {
            await (await acquire).DisposeAsync();
            return true;
        }
        catch (LockNotAvailableException e)
        {
            Assert.DoesNotContain("NoWait", e.Message, StringComparison.Ordinal);
            return false;
        }
    }

    private async Task<bool> InTransaction(Func<NpgsqlTransaction, Task> take)
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        try
        {
            await take(tx);
            return true;
        }
        catch (LockNotAvailableException e)
        {
            Assert.DoesNotContain("NoWait", e.Message, StringComparison.Ordinal);
            return false;
        }
    }

    [Fact]
    public async Task Zero_means_do_not_wait_in_every_entry_point()
    {
        var key = UniqueKey();
        foreach (var (name, take) in EntryPoints())
        {
            Assert.True(await take(key, TimeSpan.Zero), $"{name}: a free lock is granted with a zero timeout.");
            await using (var holder = await db.DataSource.AcquireAdvisoryLockAsync(key))
            {
                // Were zero "wait forever", this would hang until the 10 s guard.
                Assert.False(await take(key, TimeSpan.Zero).WaitAsync(TimeSpan.FromSeconds(10)), $"{name}: a held lock is refused at once with a zero timeout.");
            }
        }

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using (await db.DataSource.AcquireAdvisoryLockAsync(key))
        {
            Assert.False(await tx.TryAcquireAdvisoryLockAsync(key));
        }

        Assert.Equal(0, await HoldersAsync(key));
    }

    [Fact]
    public async Task Null_and_infinite_wait_until_the_holder_lets_go_in_every_entry_point()
    {
        foreach (var (name, take) in EntryPoints())
        {
            foreach (var forever in new TimeSpan?[] { null, Timeout.InfiniteTimeSpan })
            {
                var key = UniqueKey();
                var holder = await db.DataSource.AcquireAdvisoryLockAsync(key);
                var waiting = take(key, forever);
                await Task.Delay(100);
                Assert.False(waiting.IsCompleted, $"{name} ({forever}): waits while the lock is held.");
                await holder.DisposeAsync();
                Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(30)), $"{name} ({forever}): granted once the holder let go.");
            }
        }
    }

    [Fact]
    public async Task Negative_and_too_long_timeouts_are_refused_in_every_entry_point_before_anything_is_sent()
    {
        var key = UniqueKey();
        foreach (var (name, take) in EntryPoints())
        {
            foreach (var bad in new[] { TimeSpan.FromMilliseconds(-2), TimeSpan.FromDays(-3), TimeSpan.FromDays(25) })
            {
                var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => take(key, bad));
                Assert.Equal("timeout", error.ParamName);
                Assert.DoesNotContain("NoWait", error.Message, StringComparison.Ordinal);
            }
        }

        Assert.Equal(0, await HoldersAsync(key));
    }

    [Fact]
    public async Task A_positive_timeout_waits_that_long_then_refuses_in_every_entry_point()
    {
        var key = UniqueKey();
        await using var holder = await db.DataSource.AcquireAdvisoryLockAsync(key);
        foreach (var (name, take) in EntryPoints())
        {
            Assert.False(await take(key, TimeSpan.FromMilliseconds(50)), $"{name}: refused after the timeout.");
        }

        Assert.Equal(1, await HoldersAsync(key));
    }
}
