using System.Collections.Concurrent;
using System.Diagnostics;
using Dapper;
using RowLock.Tests.Infrastructure;
using Xunit.Abstractions;

namespace RowLock.Tests;

/// <summary>Counting semaphores on advisory locks: at most N holders, first come first served, released with the session or transaction.</summary>
public sealed class SemaphoreTests(DatabaseFixture db, ITestOutputHelper output) : IClassFixture<DatabaseFixture>
{
    private const int Slots = 4;
    private const int Contenders = 4 * Slots;

    private static SemaphoreKey UniqueSemaphore() => SemaphoreKey.FromName("semaphore-" + Guid.NewGuid());

    /// <summary>Granted slot locks of the semaphore on the server (the turnstile, objid 2^32-1, is not a slot).</summary>
    internal static string SlotHoldersSql(SemaphoreKey semaphore) =>
        $"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = {(uint)semaphore.ClassId} AND objid <> 4294967295 " +
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

    /// <summary>Every lock (slot or turnstile, granted or waiting) of the semaphore on the server.</summary>
    internal static string AnyLockSql(SemaphoreKey semaphore) =>
        $"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = {(uint)semaphore.ClassId} " +
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

    [Fact]
    public async Task At_most_N_session_holders_at_any_instant_with_4N_contenders()
    {
        var semaphore = UniqueSemaphore();
        await RunContentionAsync(semaphore, perContender: 150, async ct =>
        {
            var handle = await db.DataSource.AcquireSemaphoreAsync(semaphore, Slots, TimeSpan.FromSeconds(60), ct);
            return async () => await handle.DisposeAsync();
        });
    }

    [Fact]
    public async Task At_most_N_transaction_holders_at_any_instant_with_4N_contenders()
    {
        var semaphore = UniqueSemaphore();
        await RunContentionAsync(semaphore, perContender: 60, async ct =>
        {
            var connection = await db.DataSource.OpenConnectionAsync(ct);
            var tx = await connection.BeginTransactionAsync(ct);
            await tx.AcquireSemaphoreAsync(semaphore, Slots, TimeSpan.FromSeconds(60), ct);
            return async () =>
            {
                await tx.CommitAsync();
                await connection.DisposeAsync();
            };
        });
    }

    /// <summary>
    /// 4N contenders acquire and release in a loop. Each holder counts itself in an in-process counter (never above N), and a
    /// monitor counts the granted slot locks in pg_locks (never above N). Also reports the largest overtaking: how many
    /// later callers got a slot before an earlier one.
    /// </summary>
    private async Task RunContentionAsync(SemaphoreKey semaphore, int perContender, Func<CancellationToken, Task<Func<Task>>> acquire)
    {
        using var guard = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        int inside = 0, maxInside = 0, violations = 0;
        long tickets = 0;
        var grants = new ConcurrentQueue<long>();
        var done = 0;
        var monitor = Task.Run(async () =>
        {
            long maxOnServer = 0, samples = 0;
            await using var connection = await db.DataSource.OpenConnectionAsync();
            while (Volatile.Read(ref done) == 0)
            {
                maxOnServer = Math.Max(maxOnServer, await connection.ExecuteScalarAsync<long>(SlotHoldersSql(semaphore)));
                samples++;
            }

            return (maxOnServer, samples);
        });

        var workers = Enumerable.Range(0, Contenders).Select(w => Task.Run(async () =>
        {
            var random = new Random(w);
            for (var i = 0; i < perContender; i++)
            {
                var ticket = Interlocked.Increment(ref tickets);
                var release = await acquire(guard.Token);
                grants.Enqueue(ticket);
                var now = Interlocked.Increment(ref inside);
                InterlockedMax(ref maxInside, now);
                if (now > Slots)
                {
                    Interlocked.Increment(ref violations);
                }

                await Task.Delay(random.Next(3)); // 0 to about 2 ms inside

                Interlocked.Decrement(ref inside);
                await release();
            }
        })).ToArray();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(150));
        var elapsed = clock.Elapsed;
        Volatile.Write(ref done, 1);
        var (maxOnServer, samples) = await monitor;

        var order = grants.ToArray();
        var overtaking = LargestOvertaking(order);
        output.WriteLine($"{order.Length} acquisitions by {Contenders} contenders of {Slots} slots in {elapsed.TotalSeconds:F1} s: " +
            $"at most {maxInside} inside (in process), at most {maxOnServer} slot locks on the server over {samples} samples, largest overtaking {overtaking}.");
        Assert.Equal(0, violations);
        Assert.True(maxInside <= Slots, $"{maxInside} holders at once");
        Assert.True(maxOnServer <= Slots, $"{maxOnServer} slot locks granted at once on the server");
        Assert.True(maxInside == Slots, $"The contenders should fill every slot at some point (at most {maxInside} did)");
        Assert.Equal(0L, await db.ScalarAsync<long>(AnyLockSql(semaphore)));
    }

    /// <summary>For each grant, how many callers that asked later were granted before it; the largest of those.</summary>
    internal static int LargestOvertaking(long[] grantOrder)
    {
        var largest = 0;
        for (var i = 0; i < grantOrder.Length; i++)
        {
            var overtakenBy = 0;
            for (var j = 0; j < i; j++)
            {
                if (grantOrder[j] > grantOrder[i])
                {
                    overtakenBy++;
                }
            }

            largest = Math.Max(largest, overtakenBy);
        }

        return largest;
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Waiters_get_slots_in_the_order_they_arrived(bool transactionScope)
    {
        const int waiters = 8;
        var semaphore = UniqueSemaphore();
        var holders = new List<AdvisoryLockHandle>();
        for (var i = 0; i < 2; i++)
        {
            holders.Add(await db.DataSource.AcquireSemaphoreAsync(semaphore, 2));
        }

        var granted = new ConcurrentQueue<int>();
        var acquired = new List<TaskCompletionSource<Func<Task>>>();
        for (var w = 0; w < waiters; w++)
        {
            var arrival = w;
            var slot = new TaskCompletionSource<Func<Task>>(TaskCreationOptions.RunContinuationsAsynchronously);
            acquired.Add(slot);
            _ = Task.Run(async () =>
            {
                try
                {
                    if (transactionScope)
                    {
                        var connection = await db.DataSource.OpenConnectionAsync();
                        var tx = await connection.BeginTransactionAsync();
                        await tx.AcquireSemaphoreAsync(semaphore, 2, TimeSpan.FromSeconds(60));
                        granted.Enqueue(arrival);
                        slot.SetResult(async () => { await tx.CommitAsync(); await connection.DisposeAsync(); });
                    }
                    else
                    {
                        var handle = await db.DataSource.AcquireSemaphoreAsync(semaphore, 2, TimeSpan.FromSeconds(60));
                        granted.Enqueue(arrival);
                        slot.SetResult(async () => await handle.DisposeAsync());
                    }
                }
                catch (Exception e)
                {
                    slot.SetException(e);
                }
            });
            await WaitUntilAsync(async () => await QueuedAsync(semaphore) == arrival + 1, $"waiter {arrival} queued");
        }

        // Free one slot at a time: it must go to the oldest waiter left, which frees its own slot at the next step.
        var frees = new List<Func<Task>> { async () => await holders[0].DisposeAsync(), async () => await holders[1].DisposeAsync() };
        for (var w = 0; w < waiters; w++)
        {
            await frees[w]();
            frees.Add(await acquired[w].Task.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal(w + 1, granted.Count);
        }

        foreach (var free in frees.Skip(waiters))
        {
            await free();
        }

        var order = granted.ToArray();
        output.WriteLine($"Grant order: {string.Join(", ", order)}; largest overtaking {LargestOvertaking(order.Select(o => (long)o).ToArray())}.");
        Assert.Equal(Enumerable.Range(0, waiters), order);
        await WaitUntilAsync(async () => await db.ScalarAsync<long>(AnyLockSql(semaphore)) == 0, "no lock left");
    }

    /// <summary>Sessions holding or waiting for the turnstile: the queue.</summary>
    private Task<long> QueuedAsync(SemaphoreKey semaphore) => db.ScalarAsync<long>(
        $"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = {(uint)semaphore.ClassId} AND objid = 4294967295");

    internal static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"Timed out waiting for: {what}");
            await Task.Delay(5);
        }
    }

    [Fact]
    public async Task A_holders_killed_backend_frees_its_slot_and_fires_LockLost()
    {
        var semaphore = UniqueSemaphore();
        var holder = await db.DataSource.AcquireSemaphoreAsync(semaphore, 1);
        var lost = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        holder.LockLost.Register(() => lost.TrySetResult());
        var waiter = db.DataSource.AcquireSemaphoreAsync(semaphore, 1, TimeSpan.FromSeconds(60));
        await WaitUntilAsync(async () => await QueuedAsync(semaphore) == 1, "the waiter queued");

        await db.ExecuteAsync($"SELECT pg_terminate_backend(pid) FROM pg_locks WHERE {holder.Key.PgLocksPredicate} AND granted");

        await lost.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await using var next = await waiter.WaitAsync(TimeSpan.FromSeconds(30)); // no NOTIFY from a killed backend: the re-check finds the slot
        Assert.Equal(semaphore.SlotKey(0), next.Key);
        await holder.DisposeAsync();
    }

    [Fact]
    public async Task A_transaction_scoped_slot_is_held_until_commit_or_rollback()
    {
        var semaphore = UniqueSemaphore();
        foreach (var end in new[] { "commit", "rollback" })
        {
            await using var first = await db.DataSource.OpenConnectionAsync();
            var tx = await first.BeginTransactionAsync();
            Assert.Equal(0, await tx.AcquireSemaphoreAsync(semaphore, 1));
            Assert.Null(await db.DataSource.TryAcquireSemaphoreAsync(semaphore, 1));

            await using var second = await db.DataSource.OpenConnectionAsync();
            await using var tx2 = await second.BeginTransactionAsync();
            Assert.Null(await tx2.TryAcquireSemaphoreAsync(semaphore, 1));
            var waiting = tx2.AcquireSemaphoreAsync(semaphore, 1, TimeSpan.FromSeconds(60));
            await Task.Delay(100);
            Assert.False(waiting.IsCompleted, $"{end}: the second transaction waits while the first holds the only slot");
            if (end == "commit")
            {
                await tx.CommitAsync();
            }
            else
            {
                await tx.RollbackAsync();
            }

            Assert.Equal(0, await waiting.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal(1L, await db.ScalarAsync<long>(SlotHoldersSql(semaphore)));
            await tx2.CommitAsync();
            Assert.Equal(0L, await db.ScalarAsync<long>(AnyLockSql(semaphore)));
        }
    }

    [Fact]
    public async Task A_refused_transaction_acquire_leaves_the_transaction_usable_and_holding_nothing()
    {
        var semaphore = UniqueSemaphore();
        await using var holder = await db.DataSource.AcquireSemaphoreAsync(semaphore, 1);
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await Assert.ThrowsAsync<LockNotAvailableException>(() => tx.AcquireSemaphoreAsync(semaphore, 1, TimeSpan.FromMilliseconds(50)));
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT 1", transaction: tx));
        Assert.Equal(1L, await db.ScalarAsync<long>(AnyLockSql(semaphore))); // the holder's slot only
    }

    [Fact]
    public async Task Bad_arguments_are_refused_before_anything_is_sent()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        foreach (var count in new[] { 0, -1, SemaphoreKey.MaxCount + 1 })
        {
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => db.DataSource.AcquireSemaphoreAsync("s", count));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => db.DataSource.TryAcquireSemaphoreAsync("s", count));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => tx.AcquireSemaphoreAsync("s", count));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => tx.TryAcquireSemaphoreAsync("s", count));
        }

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => db.DataSource.AcquireSemaphoreAsync("s", 2, TimeSpan.FromSeconds(-1)));
        await Assert.ThrowsAsync<ArgumentException>(() => db.DataSource.AcquireSemaphoreAsync("", 2));
        await Assert.ThrowsAsync<ArgumentNullException>(() => db.DataSource.AcquireSemaphoreAsync((string)null!, 2));
        await using var multiplexing = db.CreateDataSource(b => b.Multiplexing = true);
        await Assert.ThrowsAsync<NotSupportedException>(() => multiplexing.AcquireSemaphoreAsync("s", 2));
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT 1", transaction: tx)); // nothing failed on the transaction
    }

    [Fact]
    public async Task An_explicit_class_id_names_the_slots()
    {
        var semaphore = SemaphoreKey.FromClassId(-123456);
        await using var handle = await db.DataSource.AcquireSemaphoreAsync(semaphore, 3);
        Assert.Equal(AdvisoryLockKey.FromInt32Pair(-123456, 0), handle.Key);
        Assert.Equal(1L, await db.AdvisoryHoldersAsync(AdvisoryLockKey.FromInt32Pair(-123456, 0)));
        Assert.Equal([AdvisoryLockKey.FromInt32Pair(-123456, 0), AdvisoryLockKey.FromInt32Pair(-123456, 1), AdvisoryLockKey.FromInt32Pair(-123456, 2)], semaphore.SlotKeys(3));
    }
}
