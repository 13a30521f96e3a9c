using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;
using Xunit.Abstractions;

namespace RowLock.Tests;

/// <summary>Several advisory locks in one call: ascending key order whatever the order given, all or none.</summary>
public sealed class MultiKeyAdvisoryLockTests(DatabaseFixture db, ITestOutputHelper output) : IClassFixture<DatabaseFixture>
{
    private const int Iterations = 150;

    /// <summary>Names whose keys sort differently from the names: three names, in name order and reversed.</summary>
    private static (AdvisoryLockKey[] ByName, AdvisoryLockKey[] Reversed) OverlappingSets()
    {
        var prefix = "multikey-" + Guid.NewGuid();
        var keys = new[] { "a", "b", "c", "d" }.Select(n => AdvisoryLockKey.FromName(prefix + n)).ToArray();
        return (keys[..3], keys[1..].Reverse().ToArray()); // {a, b, c} and {d, c, b}: b and c overlap, asked in opposite orders
    }

    private Task<long> HeldAsync(IEnumerable<AdvisoryLockKey> keys) =>
        db.ScalarAsync<long>($"SELECT count(*) FROM pg_locks WHERE granted AND (({string.Join(") OR (", keys.Select(k => k.PgLocksPredicate))}))");

    [Fact]
    public async Task Two_transactions_asking_for_overlapping_sets_in_opposite_orders_never_deadlock()
    {
        var (first, second) = OverlappingSets();
        var deadlocks = 0;
        var inside = 0;
        var overlapViolations = 0;
        async Task Worker(AdvisoryLockKey[] keys)
        {
            for (var i = 0; i < Iterations; i++)
            {
                await using var connection = await db.DataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                try
                {
                    await tx.AcquireAdvisoryLocksAsync(keys, TimeSpan.FromSeconds(60));
                    if (Interlocked.Increment(ref inside) > 1)
                    {
                        Interlocked.Increment(ref overlapViolations); // both sets hold b and c: one at a time
                    }

                    await Task.Yield();
                    Interlocked.Decrement(ref inside);
                    await tx.CommitAsync();
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DeadlockDetected)
                {
                    Interlocked.Increment(ref deadlocks);
                }
            }
        }

        await Task.WhenAll(Worker(first), Worker(second), Worker(first), Worker(second)).WaitAsync(TimeSpan.FromSeconds(120));
        output.WriteLine($"{4 * Iterations} transactions over overlapping sets: {deadlocks} deadlocks.");
        Assert.Equal(0, deadlocks);
        Assert.Equal(0, overlapViolations);
        Assert.Equal(0L, await HeldAsync(first.Concat(second)));
    }

    [Fact]
    public async Task Two_session_handles_asking_for_overlapping_sets_in_opposite_orders_never_deadlock()
    {
        var (first, second) = OverlappingSets();
        var deadlocks = 0;
        async Task Worker(AdvisoryLockKey[] keys)
        {
            for (var i = 0; i < Iterations; i++)
            {
                try
                {
                    await using var handle = await db.DataSource.AcquireAdvisoryLocksAsync(keys, TimeSpan.FromSeconds(60));
                    Assert.Equal(keys.OrderBy(k => k.Value), handle.Keys);
                    await Task.Yield();
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DeadlockDetected)
                {
                    Interlocked.Increment(ref deadlocks);
                }
            }
        }

        await Task.WhenAll(Worker(first), Worker(second), Worker(first), Worker(second)).WaitAsync(TimeSpan.FromSeconds(120));
        output.WriteLine($"{4 * Iterations} session acquisitions over overlapping sets: {deadlocks} deadlocks.");
        Assert.Equal(0, deadlocks);
        Assert.Equal(0L, await HeldAsync(first.Concat(second)));
    }

    [Fact]
    public async Task A_set_not_granted_in_time_leaves_none_of_its_locks_held()
    {
        var (keys, _) = OverlappingSets();
        var sorted = keys.OrderBy(k => k.Value).ToArray();
        await using (await db.DataSource.AcquireAdvisoryLockAsync(sorted[2])) // the last one in key order: the first two are taken before the wait fails
        {
            var refused = await Assert.ThrowsAsync<LockNotAvailableException>(() => db.DataSource.AcquireAdvisoryLocksAsync(keys, TimeSpan.FromMilliseconds(100)));
            Assert.Equal(1L, await HeldAsync(keys)); // the blocker's only

            await using var connection = await db.DataSource.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            await Assert.ThrowsAsync<LockNotAvailableException>(() => tx.AcquireAdvisoryLocksAsync(keys, TimeSpan.FromMilliseconds(100)));
            Assert.Equal(1L, await HeldAsync(keys));
            Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT 1", transaction: tx)); // still usable

            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => tx.AcquireAdvisoryLocksAsync(keys, cancellationToken: cancel.Token));
            Assert.Equal(1L, await HeldAsync(keys));
            Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT 1", transaction: tx)); // rolled back to the set's savepoint

            using var cancelSession = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => db.DataSource.AcquireAdvisoryLocksAsync(keys, cancellationToken: cancelSession.Token));
            Assert.Equal(1L, await HeldAsync(keys));
        }

        await using var all = await db.DataSource.AcquireAdvisoryLocksAsync(keys, TimeSpan.Zero);
        Assert.Equal(3L, await HeldAsync(keys));
    }

    [Fact]
    public void Keys_are_taken_in_ascending_key_order_not_name_order()
    {
        // "b" sorts after "a" by name; their keys may sort either way. The order is the keys', 64-bit before two-int.
        var mixed = new[] { AdvisoryLockKey.FromInt32Pair(1, 2), AdvisoryLockKey.FromInt64(5), AdvisoryLockKey.FromInt32Pair(-1, 7), AdvisoryLockKey.FromInt64(-9), AdvisoryLockKey.FromInt64(5) };
        Assert.Equal(
            [AdvisoryLockKey.FromInt64(-9), AdvisoryLockKey.FromInt64(5), AdvisoryLockKey.FromInt32Pair(-1, 7), AdvisoryLockKey.FromInt32Pair(1, 2)],
            Internal.AdvisoryLockKeyOrder.Sort(mixed, "keys"));
        Assert.Throws<ArgumentException>(() => Internal.AdvisoryLockKeyOrder.Sort([], "keys"));
    }
}
