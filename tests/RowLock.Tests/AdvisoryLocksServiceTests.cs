using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>The AdvisoryLocks service: its own logger (no global to go stale), public event ids, and logging that cannot leak a lock.</summary>
public sealed class AdvisoryLocksServiceTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static AdvisoryLockKey UniqueKey() => AdvisoryLockKey.FromName("service-" + Guid.NewGuid());

    private async Task<long> HoldersAsync(AdvisoryLockKey key) =>
        await db.ScalarAsync<long>($"SELECT count(*) FROM pg_locks WHERE {key.PgLocksPredicate} AND granted");

    [Fact]
    public async Task The_service_logs_each_outcome_under_its_category_with_the_public_event_ids()
    {
        var provider = new RecordingLoggerProvider();
        using var factory = provider.CreateFactory();
        var locks = new AdvisoryLocks(db.DataSource, factory);
        var key = UniqueKey();

        var handle = await locks.AcquireAsync(key);
        Assert.Null(await locks.TryAcquireAsync(key));
        await Assert.ThrowsAsync<LockNotAvailableException>(() => locks.AcquireInTransactionAsync(key, TimeSpan.FromMilliseconds(20)));
        await handle.DisposeAsync();

        Assert.All(provider.Entries, e => Assert.Equal("RowLock.AdvisoryLocks", e.Category));
        Assert.Equal(
            [RowLockEventIds.AdvisoryLockAcquired, RowLockEventIds.AdvisoryLockSkipped, RowLockEventIds.AdvisoryLockTimedOut, RowLockEventIds.AdvisoryLockReleased],
            provider.Entries.Select(e => e.EventId).ToArray());
    }

    [Fact]
    public async Task The_transaction_extension_methods_log_nothing()
    {
        var provider = new RecordingLoggerProvider();
        using var factory = provider.CreateFactory();
        _ = new AdvisoryLocks(db.DataSource, factory);
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        Assert.True(await tx.TryAcquireAdvisoryLockAsync(UniqueKey()));
        await tx.AcquireAdvisoryLockAsync(UniqueKey(), TimeSpan.FromSeconds(5));
        Assert.Empty(provider.Entries);
    }

    [Fact]
    public async Task Handles_outliving_a_disposed_logger_factory_still_acquire_and_release()
    {
        // What AddRowLock's static did: the container (and its logger factory) is disposed while locks are still taken.
        var provider = new RecordingLoggerProvider();
        var factory = provider.CreateFactory();
        var locks = new AdvisoryLocks(db.DataSource, factory);
        var key = UniqueKey();
        await using var before = await locks.AcquireAsync(key, mode: AdvisoryLockMode.Shared);
        factory.Dispose();

        await using (var after = await locks.AcquireAsync(key, mode: AdvisoryLockMode.Shared))
        {
            Assert.Equal(2, await HoldersAsync(key));
        }

        await before.DisposeAsync();
        Assert.Equal(0, await HoldersAsync(key));
    }

    [Fact]
    public async Task A_logger_that_throws_never_leaves_a_lock_behind()
    {
        var key = UniqueKey();

        // (Microsoft.Extensions.Logging wraps a provider's exception in an AggregateException.)

        // Throws while logging "acquired": the call fails, and the lock it had just taken is released.
        var failing = new AdvisoryLocks(db.DataSource, new RecordingLoggerProvider(throwOn: RowLockEventIds.AdvisoryLockAcquired).CreateFactory());
        await Assert.ThrowsAsync<AggregateException>(() => failing.AcquireAsync(key));
        Assert.Equal(0, await HoldersAsync(key));
        await Assert.ThrowsAsync<AggregateException>(() => failing.AcquireInTransactionAsync(key));
        Assert.Equal(0, await HoldersAsync(key));

        // Throws while logging "released": the lock is released and the connection given back before the error surfaces.
        var failingRelease = new AdvisoryLocks(db.DataSource, new RecordingLoggerProvider(throwOn: RowLockEventIds.AdvisoryLockReleased).CreateFactory());
        foreach (var acquire in new Func<Task<AdvisoryLockHandle>>[] { () => failingRelease.AcquireAsync(key), () => failingRelease.AcquireInTransactionAsync(key) })
        {
            var handle = await acquire();
            await Assert.ThrowsAsync<AggregateException>(async () => await handle.DisposeAsync());
            Assert.Equal(0, await HoldersAsync(key));
            await handle.DisposeAsync(); // released once; a second dispose is quiet
        }
    }

    [Fact]
    public async Task A_null_logger_factory_logs_nothing_and_works()
    {
        var locks = new AdvisoryLocks(db.DataSource);
        var key = UniqueKey();
        await using (await locks.AcquireAsync(key))
        {
            Assert.Equal(1, await HoldersAsync(key));
        }

        Assert.Equal(0, await HoldersAsync(key));
        Assert.Throws<ArgumentNullException>(() => new AdvisoryLocks(null!));
    }
}
