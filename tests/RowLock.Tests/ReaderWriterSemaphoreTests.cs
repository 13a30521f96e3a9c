using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Shared advisory locks as a reader-writer lock (a semaphore with unbounded readers and one writer): PostgreSQL queues a
/// shared request behind a waiting exclusive one, so writers are not starved by a stream of readers.
/// </summary>
public sealed class ReaderWriterSemaphoreTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static AdvisoryLockKey UniqueKey() => AdvisoryLockKey.FromName("rw-" + Guid.NewGuid());

    private Task<long> CountAsync(AdvisoryLockKey key, string mode, bool granted) => db.ScalarAsync<long>(
        $"SELECT count(*) FROM pg_locks WHERE {key.PgLocksPredicate} AND mode = @mode AND granted = @granted", new { mode, granted });

    [Fact]
    public async Task A_shared_request_queues_behind_a_waiting_exclusive_one()
    {
        var key = UniqueKey();
        var firstReader = await db.DataSource.AcquireAdvisoryLockAsync(key, mode: AdvisoryLockMode.Shared);
        var writer = db.DataSource.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(60));
        await SemaphoreTests.WaitUntilAsync(async () => await CountAsync(key, "ExclusiveLock", granted: false) == 1, "the writer waits");

        var secondReader = db.DataSource.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(60), AdvisoryLockMode.Shared);
        await SemaphoreTests.WaitUntilAsync(async () => await CountAsync(key, "ShareLock", granted: false) == 1, "the second reader waits");
        Assert.False(secondReader.IsCompleted, "A reader does not join the readers while a writer waits.");

        await firstReader.DisposeAsync();
        var writing = await writer.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(secondReader.IsCompleted, "The writer goes first: it asked first.");
        await writing.DisposeAsync();
        await (await secondReader.WaitAsync(TimeSpan.FromSeconds(30))).DisposeAsync();
    }

    [Fact]
    public async Task A_failed_try_shared_does_not_mean_a_writer_holds_it()
    {
        var key = UniqueKey();
        await using var reader = await db.DataSource.AcquireAdvisoryLockAsync(key, mode: AdvisoryLockMode.Shared);
        var writer = db.DataSource.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(60));
        await SemaphoreTests.WaitUntilAsync(async () => await CountAsync(key, "ExclusiveLock", granted: false) == 1, "the writer waits");

        Assert.Null(await db.DataSource.TryAcquireAdvisoryLockAsync(key, mode: AdvisoryLockMode.Shared));
        await using (var connection = await db.DataSource.OpenConnectionAsync())
        await using (var tx = await connection.BeginTransactionAsync())
        {
            Assert.False(await tx.TryAcquireAdvisoryLockAsync(key, AdvisoryLockMode.Shared));
        }

        // Refused, yet only readers hold it: the writer is still waiting.
        Assert.Equal(0L, await CountAsync(key, "ExclusiveLock", granted: true));
        Assert.Equal(1L, await CountAsync(key, "ShareLock", granted: true));
        await reader.DisposeAsync();
        await (await writer.WaitAsync(TimeSpan.FromSeconds(30))).DisposeAsync();
    }
}
