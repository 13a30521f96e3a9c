using Npgsql;

namespace RowLock;

/// <summary>
/// Counting semaphores and several advisory locks at once, straight from a data source: shortcuts for the methods of
/// <c>new AdvisoryLocks(dataSource)</c>, which log nothing. The locks are session-level, held on a connection the
/// returned handle owns until it is disposed (or the connection dies: <see cref="AdvisoryLockHandle.LockLost"/>).
/// Session locks do not work behind PgBouncer transaction pooling; use the <see cref="NpgsqlTransaction"/> overloads there.
/// </summary>
public static class SemaphoreDataSourceExtensions
{
    /// <summary>
    /// Tries to take one of <paramref name="maxCount"/> slots of the semaphore named <paramref name="name"/> (see
    /// <see cref="SemaphoreKey.FromName"/>), first come, first served. Same as <see cref="AdvisoryLocks.TryAcquireSemaphoreAsync"/>.
    /// </summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="name">The semaphore's name.</param>
    /// <param name="maxCount">How many holders at once. Every user of the semaphore must pass the same count.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait; infinite waits as long as it takes.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no slot behind.</param>
    /// <returns>The handle holding a slot, or null when none was free in time. Dispose it to release.</returns>
    /// <exception cref="ArgumentException"><paramref name="name"/> is null, empty or not valid UTF-16.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The count or the timeout is out of range.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes. Nothing was sent.</exception>
    public static Task<AdvisoryLockHandle?> TryAcquireSemaphoreAsync(this NpgsqlDataSource dataSource, string name, int maxCount,
        TimeSpan timeout = default, CancellationToken cancellationToken = default) =>
        new AdvisoryLocks(dataSource).TryAcquireSemaphoreAsync(SemaphoreKey.FromName(name), maxCount, timeout, cancellationToken);

    /// <summary>Like <see cref="TryAcquireSemaphoreAsync(NpgsqlDataSource, string, int, TimeSpan, CancellationToken)"/>, for a semaphore key (e.g. an explicit class id).</summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="semaphore">The semaphore.</param>
    /// <param name="maxCount">How many holders at once. Every user of the semaphore must pass the same count.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait; infinite waits as long as it takes.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no slot behind.</param>
    /// <returns>The handle holding a slot, or null when none was free in time. Dispose it to release.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The count or the timeout is out of range.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes. Nothing was sent.</exception>
    public static Task<AdvisoryLockHandle?> TryAcquireSemaphoreAsync(this NpgsqlDataSource dataSource, SemaphoreKey semaphore, int maxCount,
        TimeSpan timeout = default, CancellationToken cancellationToken = default) =>
        new AdvisoryLocks(dataSource).TryAcquireSemaphoreAsync(semaphore, maxCount, timeout, cancellationToken);

    /// <summary>
    /// Takes one of <paramref name="maxCount"/> slots of the semaphore named <paramref name="name"/>, waiting first come,
    /// first served while all are taken. Same as <see cref="AdvisoryLocks.AcquireSemaphoreAsync"/>.
    /// </summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="name">The semaphore's name.</param>
    /// <param name="maxCount">How many holders at once. Every user of the semaphore must pass the same count.</param>
    /// <param name="timeout">The longest wait: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no slot behind.</param>
    /// <returns>The handle holding a slot. Dispose it to release.</returns>
    /// <exception cref="LockNotAvailableException">No slot was free within <paramref name="timeout"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is null, empty or not valid UTF-16.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The count or the timeout is out of range.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes. Nothing was sent.</exception>
    public static Task<AdvisoryLockHandle> AcquireSemaphoreAsync(this NpgsqlDataSource dataSource, string name, int maxCount,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        new AdvisoryLocks(dataSource).AcquireSemaphoreAsync(SemaphoreKey.FromName(name), maxCount, timeout, cancellationToken);

    /// <summary>Like <see cref="AcquireSemaphoreAsync(NpgsqlDataSource, string, int, TimeSpan?, CancellationToken)"/>, for a semaphore key (e.g. an explicit class id).</summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="semaphore">The semaphore.</param>
    /// <param name="maxCount">How many holders at once. Every user of the semaphore must pass the same count.</param>
    /// <param name="timeout">The longest wait: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no slot behind.</param>
    /// <returns>The handle holding a slot. Dispose it to release.</returns>
    /// <exception cref="LockNotAvailableException">No slot was free within <paramref name="timeout"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The count or the timeout is out of range.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes. Nothing was sent.</exception>
    public static Task<AdvisoryLockHandle> AcquireSemaphoreAsync(this NpgsqlDataSource dataSource, SemaphoreKey semaphore, int maxCount,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        new AdvisoryLocks(dataSource).AcquireSemaphoreAsync(semaphore, maxCount, timeout, cancellationToken);

    /// <summary>
    /// Takes several session-level advisory locks on one connection, all or none, in ascending key order (not the order
    /// given, not name order), so overlapping sets never deadlock. Same as <see cref="AdvisoryLocks.AcquireAllAsync"/>.
    /// </summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="keys">The locks (at least one; duplicates count once).</param>
    /// <param name="timeout">The longest wait for all of them: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="mode">Exclusive or shared, for every lock.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves none of the locks behind.</param>
    /// <returns>One handle holding every lock. Dispose it to release them all.</returns>
    /// <exception cref="LockNotAvailableException">Some lock was not granted in time; none is held.</exception>
    /// <exception cref="ArgumentException"><paramref name="keys"/> is empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is out of range.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes. Nothing was sent.</exception>
    public static Task<AdvisoryLockHandle> AcquireAdvisoryLocksAsync(this NpgsqlDataSource dataSource, IEnumerable<AdvisoryLockKey> keys,
        TimeSpan? timeout = null, AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default) =>
        new AdvisoryLocks(dataSource).AcquireAllAsync(keys, timeout, mode, cancellationToken);
}
