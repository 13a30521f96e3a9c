using System.Diagnostics;
using System.Runtime.CompilerServices;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>What a session handle does while it sits idle: keep its connection alive, report a lost lock, and free the lock when abandoned.</summary>
public sealed class AdvisoryLockLifecycleTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static AdvisoryLockKey UniqueKey() => AdvisoryLockKey.FromName("lifecycle-" + Guid.NewGuid());

    private async Task<long> HoldersAsync(AdvisoryLockKey key) =>
        await db.ScalarAsync<long>($"SELECT count(*) FROM pg_locks WHERE {key.PgLocksPredicate} AND granted");

    [Fact]
    public async Task A_handle_nobody_disposes_releases_its_lock_once_collected()
    {
        var key = UniqueKey();
        await AcquireAndDropAsync(key, watchLockLost: false);
        await AcquireAndDropAsync(key, watchLockLost: true);
        var deadline = Stopwatch.StartNew();
        while (await HoldersAsync(key) > 0)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), "The abandoned handles still hold the lock.");
            GC.Collect();
            GC.WaitForPendingFinalizers();
            await Task.Delay(100);
        }
    }

    /// <summary>Takes the lock in shared mode (so both drops can hold it at once) and forgets the handle.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private async Task AcquireAndDropAsync(AdvisoryLockKey key, bool watchLockLost)
    {
        var handle = await db.DataSource.AcquireAdvisoryLockAsync(key, mode: AdvisoryLockMode.Shared);
        if (watchLockLost)
        {
            _ = handle.LockLost.Register(() => { });
        }

        Assert.True(await HoldersAsync(key) > 0);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task An_idle_handle_sends_the_keepalive_its_connection_string_asks_for(bool watched)
    {
        await using var pool = db.CreateDataSource(b => b.KeepAlive = 1);
        var key = UniqueKey();
        await using var handle = await pool.AcquireAdvisoryLockAsync(key);
        if (watched)
        {
            _ = handle.LockLost; // someone watches the lock: the handle waits on the connection
        }
        var (classId, objId, _) = key.PgLocksCoordinates;
        var pid = await db.ScalarAsync<int>(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = @c::bigint::oid AND objid = @o::bigint::oid",
            new { c = (long)classId, o = (long)objId });

        // Every message the client sends moves the backend's state_change; an idle session that hears nothing keeps it.
        var first = await StateChangeAsync(pid);
        var deadline = Stopwatch.StartNew();
        while (await StateChangeAsync(pid) == first)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(15), "No keepalive reached the server: the idle handle's session saw nothing.");
            await Task.Delay(200);
        }

        Assert.False(handle.IsLost);
    }

    private Task<DateTime> StateChangeAsync(int pid) =>
        db.ScalarAsync<DateTime>("SELECT state_change FROM pg_stat_activity WHERE pid = @pid", new { pid });

    [Fact]
    public async Task A_transaction_held_handle_fires_lock_lost_when_its_backend_is_terminated()
    {
        var key = UniqueKey();
        await using var handle = await db.DataSource.AcquireAdvisoryLockInTransactionAsync(key);
        var lost = new TaskCompletionSource();
        handle.LockLost.Register(() => lost.TrySetResult());
        await db.ExecuteAsync($"SELECT pg_terminate_backend(pid) FROM pg_locks WHERE {key.PgLocksPredicate}");
        await lost.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(handle.IsLost);
        Assert.Equal(0, await HoldersAsync(key));
    }
}
