using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// A session handle first tries its lock without waiting (an uncontended acquire is one plain statement) and only then
/// waits. These prove that shortcut keeps the queue's order and that the cheap multiplexing check reads every spelling.
/// </summary>
public sealed class AdvisoryFastPathTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static AdvisoryLockKey UniqueKey() => AdvisoryLockKey.FromName("fast-path-" + Guid.NewGuid());

    private async Task<long> CountAsync(AdvisoryLockKey key, string mode, bool granted) =>
        await db.ScalarAsync<long>(
            $"SELECT count(*) FROM pg_locks WHERE {key.PgLocksPredicate} AND mode = @mode AND granted = @granted",
            new { mode, granted });

    private async Task UntilAsync(Func<Task<bool>> condition, string what)
    {
        for (var i = 0; i < 400; i++)
        {
            if (await condition())
            {
                return;
            }

            await Task.Delay(25);
        }

        Assert.Fail($"Still not true after 10 s: {what}.");
    }

    [Fact]
    public async Task A_shared_acquire_queues_behind_a_waiting_exclusive_one_instead_of_overtaking_it()
    {
        var key = UniqueKey();
        var firstReader = await db.DataSource.AcquireAdvisoryLockAsync(key, mode: AdvisoryLockMode.Shared);
        var writer = db.DataSource.AcquireAdvisoryLockAsync(key);
        await UntilAsync(async () => await CountAsync(key, "ExclusiveLock", granted: false) == 1, "the writer waits");

        // A shared lock is compatible with the reader that holds the key; only the waiting writer stands in the way.
        // Trying first must not slip this reader past the writer (which could starve writers for as long as readers overlap).
        var secondReader = db.DataSource.AcquireAdvisoryLockAsync(key, mode: AdvisoryLockMode.Shared);
        await UntilAsync(async () => await CountAsync(key, "ShareLock", granted: false) == 1, "the second reader waits");
        Assert.False(secondReader.IsCompleted, "The second reader queues behind the writer.");

        await firstReader.DisposeAsync();
        var writerHandle = await writer.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, await CountAsync(key, "ShareLock", granted: false));
        Assert.False(secondReader.IsCompleted, "The second reader still waits while the writer holds the lock.");

        await writerHandle.DisposeAsync();
        await using (await secondReader.WaitAsync(TimeSpan.FromSeconds(10)))
        {
            Assert.Equal(1, await CountAsync(key, "ShareLock", granted: true));
        }

        Assert.Equal(0, await CountAsync(key, "ShareLock", granted: true) + await CountAsync(key, "ExclusiveLock", granted: true));
    }

    [Fact]
    public async Task A_waiting_acquire_still_gets_the_lock_when_the_holder_lets_go()
    {
        var key = UniqueKey();
        var holder = await db.DataSource.AcquireAdvisoryLockAsync(key);
        var waiter = db.DataSource.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(30));
        await UntilAsync(async () => await CountAsync(key, "ExclusiveLock", granted: false) == 1, "the waiter waits");
        await holder.DisposeAsync();
        await using (await waiter.WaitAsync(TimeSpan.FromSeconds(10)))
        {
            Assert.Equal(1, await CountAsync(key, "ExclusiveLock", granted: true));
        }

        Assert.Equal(0, await CountAsync(key, "ExclusiveLock", granted: true));
    }

    [Theory]
    [InlineData("Host=127.0.0.1;Multiplexing=true", true)]
    [InlineData("Host=127.0.0.1;multiplexing=True", true)]
    [InlineData("Host=127.0.0.1; MULTIPLEXING = true ;Username=u", true)]
    [InlineData("Host=127.0.0.1;Multiplexing=false", false)]
    [InlineData("Host=127.0.0.1;Application Name=multiplexed-reports", false)]
    [InlineData("Host=127.0.0.1", false)]
    public void Multiplexing_is_read_from_the_connection_string_however_it_is_spelled(string connectionString, bool multiplexes)
    {
        Assert.Equal(multiplexes, AdvisoryLocks.Multiplexes(connectionString));
    }
}
