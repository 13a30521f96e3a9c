using System.Diagnostics;
using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;
using Xunit.Abstractions;

namespace RowLock.Tests;

/// <summary>Adversarial review of advisory handles: races between dispose, the watch, dead connections and pool settings.</summary>
public sealed class AdvisoryLockAdversarialTests(DatabaseFixture db, ITestOutputHelper output) : IClassFixture<DatabaseFixture>
{
    private static AdvisoryLockKey UniqueKey() => AdvisoryLockKey.FromName("adversarial-" + Guid.NewGuid());

    private async Task<long> HoldersAsync(AdvisoryLockKey key) =>
        await db.ScalarAsync<long>($"SELECT count(*) FROM pg_locks WHERE {key.PgLocksPredicate} AND granted");

    // Waits until the backend has exited (PostgreSQL 14+): a killed backend sends its FATAL error before it releases its
    // locks, so a client that sees the loss can still find the lock in pg_locks for a moment.
    private Task KillHolderAsync(AdvisoryLockKey key) =>
        db.ExecuteAsync($"SELECT pg_terminate_backend(pid, 30000) FROM pg_locks WHERE {key.PgLocksPredicate}");

    [Fact]
    public async Task Dispose_racing_the_first_read_of_lock_lost_never_hangs_and_hands_back_a_clean_connection()
    {
        await using var pool = db.CreateDataSource(b => b.MaxPoolSize = 1);
        var key = UniqueKey();
        for (var i = 0; i < 200; i++)
        {
            var handle = await pool.AcquireAdvisoryLockAsync(key);
            using var start = new Barrier(2);
            var read = Task.Run(() => { start.SignalAndWait(); return handle.LockLost; });
            var dispose = Task.Run(async () => { start.SignalAndWait(); await handle.DisposeAsync(); });
            await Task.WhenAll(read, dispose).WaitAsync(TimeSpan.FromSeconds(20));
            Assert.False((await read).IsCancellationRequested);
            Assert.False(handle.IsLost);
            await using var next = await pool.OpenConnectionAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(0L, await next.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"));
        }
    }

    [Fact]
    public async Task A_notification_on_a_watched_connection_neither_ends_the_watch_nor_fires_lock_lost()
    {
        await using var pool = db.CreateDataSource(b => { b.MaxPoolSize = 1; b.NoResetOnClose = true; });
        var channel = "ch_" + Guid.NewGuid().ToString("N")[..8];
        await using (var c = await pool.OpenConnectionAsync())
        {
            await c.ExecuteAsync($"LISTEN {channel}"); // survives the return to the pool: no reset on close
        }

        var key = UniqueKey();
        await using var handle = await pool.AcquireAdvisoryLockAsync(key);
        var lost = new TaskCompletionSource();
        handle.LockLost.Register(() => lost.TrySetResult());
        await Task.Delay(200);
        await db.ExecuteAsync($"NOTIFY {channel}, 'x'");
        await db.ExecuteAsync($"NOTIFY {channel}, 'y'");
        await Task.Delay(500);
        Assert.False(handle.IsLost);
        await KillHolderAsync(key);
        await lost.Task.WaitAsync(TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task No_reset_on_close_still_releases_on_dispose()
    {
        await using var pool = db.CreateDataSource(b => { b.MaxPoolSize = 1; b.NoResetOnClose = true; });
        var key = UniqueKey();
        var h = await pool.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(5));
        _ = h.LockLost;
        await h.DisposeAsync();
        Assert.Equal(0, await HoldersAsync(key));
        var t = await pool.AcquireAdvisoryLockInTransactionAsync(key);
        await t.DisposeAsync();
        Assert.Equal(0, await HoldersAsync(key));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task Disposing_a_handle_whose_backend_was_killed_does_not_throw_and_frees_the_pool_slot(bool inTransaction, bool watched)
    {
        await using var pool = db.CreateDataSource(b => { b.MaxPoolSize = 1; b.Timeout = 3; });
        var key = UniqueKey();
        var handle = inTransaction ? await pool.AcquireAdvisoryLockInTransactionAsync(key) : await pool.AcquireAdvisoryLockAsync(key);
        if (watched)
        {
            var lost = new TaskCompletionSource();
            handle.LockLost.Register(() => lost.TrySetResult());
            await KillHolderAsync(key);
            await lost.Task.WaitAsync(TimeSpan.FromSeconds(20));
        }
        else
        {
            await KillHolderAsync(key);
            await Task.Delay(300);
        }

        await handle.DisposeAsync();
        Assert.Equal(0, await HoldersAsync(key));
        await using var again = await pool.AcquireAdvisoryLockAsync(key);
    }

    [Fact]
    public async Task An_abandoned_handle_whose_data_source_was_disposed_still_frees_its_lock()
    {
        var key = UniqueKey();
        var pool = db.CreateDataSource(_ => { });
        await AcquireAndDropAsync(pool, key);
        await pool.DisposeAsync();
        var deadline = Stopwatch.StartNew();
        while (await HoldersAsync(key) > 0)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), "still held");
            GC.Collect();
            GC.WaitForPendingFinalizers();
            await Task.Delay(100);
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static async Task AcquireAndDropAsync(NpgsqlDataSource pool, AdvisoryLockKey key)
    {
        var handle = await pool.AcquireAdvisoryLockAsync(key);
        _ = handle.LockLost;
    }

    /// <summary>"Null waits as long as it takes" must hold on a server (role, database, connection string) with a lock_timeout.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_infinite_acquire_waits_out_a_holder_even_when_the_server_sets_a_lock_timeout(bool inTransaction)
    {
        await using var pool = db.CreateDataSource(b => b.Options = "-c lock_timeout=200");
        var key = UniqueKey();
        var holder = await db.DataSource.AcquireAdvisoryLockAsync(key);
        var waiter = inTransaction ? pool.AcquireAdvisoryLockInTransactionAsync(key) : pool.AcquireAdvisoryLockAsync(key);
        await Task.Delay(1000); // five lock_timeouts
        await holder.DisposeAsync();
        await using var handle = await waiter.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(1, await HoldersAsync(key));
    }

    [Fact]
    public async Task Timed_shared_tries_on_an_int_pair_key_racing_the_holders_release_leak_no_lock()
    {
        var key = AdvisoryLockKey.FromInt32Pair(-7, Random.Shared.Next(int.MinValue, -1));
        await using var pool = db.CreateDataSource(_ => { });
        await using var holder = await db.DataSource.OpenConnectionAsync();
        int granted = 0, refused = 0, leaked = 0;
        for (var race = 0; race < 300; race++)
        {
            await holder.ExecuteAsync("SELECT pg_advisory_lock(@a, @b)", new { a = key.Key1, b = key.Key2 });
            var attempt = pool.TryAcquireAdvisoryLockAsync(key, TimeSpan.FromMilliseconds(10), AdvisoryLockMode.Shared);
            var releaseAt = TimeSpan.FromMilliseconds(6 + (race % 9));
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < releaseAt) { await Task.Yield(); }
            await holder.ExecuteAsync("SELECT pg_advisory_unlock(@a, @b)", new { a = key.Key1, b = key.Key2 });
            var h = await attempt;
            if (h is null) { refused++; } else { granted++; await h.DisposeAsync(); }
            if (await HoldersAsync(key) > 0) { leaked++; pool.Clear(); }
        }

        output.WriteLine($"granted {granted} refused {refused} leaked {leaked}");
        Assert.Equal(0, leaked);
    }
}
