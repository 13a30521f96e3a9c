using Npgsql;

namespace RowLock;

/// <summary>
/// Advisory lock handles straight from a data source: shortcuts for <c>new AdvisoryLocks(dataSource)</c>, which log
/// nothing. To get logs, use an <see cref="AdvisoryLocks"/> built with an ILoggerFactory (<c>services.AddRowLock()</c>
/// registers one). Session locks need a real session, so they do not work behind PgBouncer transaction pooling; the
/// <c>InTransaction</c> variants do.
/// </summary>
public static class AdvisoryLockDataSourceExtensions
{
    /// <summary>Same as <see cref="AdvisoryLocks.TryAcquireAsync"/>, without logs.</summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait; infinite waits as long as it takes.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no lock behind.</param>
    /// <returns>The handle holding the lock, or null when the lock was not granted in time. Dispose the handle to release.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or longer than 24.8 days.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    /// <exception cref="ObjectDisposedException">The data source is disposed.</exception>
    public static Task<AdvisoryLockHandle?> TryAcquireAdvisoryLockAsync(this NpgsqlDataSource dataSource, AdvisoryLockKey key,
        TimeSpan timeout = default, AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default) =>
        new AdvisoryLocks(dataSource).TryAcquireAsync(key, timeout, mode, cancellationToken);

    /// <summary>Same as <see cref="AdvisoryLocks.AcquireAsync"/>, without logs.</summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">The longest wait: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no lock behind.</param>
    /// <returns>The handle holding the lock. Dispose it to release.</returns>
    /// <exception cref="LockNotAvailableException">The lock was not granted within <paramref name="timeout"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or longer than 24.8 days.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    /// <exception cref="ObjectDisposedException">The data source is disposed.</exception>
    public static Task<AdvisoryLockHandle> AcquireAdvisoryLockAsync(this NpgsqlDataSource dataSource, AdvisoryLockKey key,
        TimeSpan? timeout = null, AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default) =>
        new AdvisoryLocks(dataSource).AcquireAsync(key, timeout, mode, cancellationToken);

    /// <summary>Same as <see cref="AdvisoryLocks.TryAcquireInTransactionAsync"/>, without logs: a transaction-held lock, for PgBouncer transaction pooling.</summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait; infinite waits as long as it takes.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The handle, or null when the lock was not granted in time.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or longer than 24.8 days.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    /// <exception cref="ObjectDisposedException">The data source is disposed.</exception>
    public static Task<AdvisoryLockHandle?> TryAcquireAdvisoryLockInTransactionAsync(this NpgsqlDataSource dataSource, AdvisoryLockKey key,
        TimeSpan timeout = default, AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default) =>
        new AdvisoryLocks(dataSource).TryAcquireInTransactionAsync(key, timeout, mode, cancellationToken);

    /// <summary>Same as <see cref="AdvisoryLocks.AcquireInTransactionAsync"/>, without logs: a transaction-held lock, for PgBouncer transaction pooling.</summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">The longest wait: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The handle holding the lock. Dispose it to release.</returns>
    /// <exception cref="LockNotAvailableException">The lock was not granted within <paramref name="timeout"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or longer than 24.8 days.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    /// <exception cref="ObjectDisposedException">The data source is disposed.</exception>
    public static Task<AdvisoryLockHandle> AcquireAdvisoryLockInTransactionAsync(this NpgsqlDataSource dataSource, AdvisoryLockKey key,
        TimeSpan? timeout = null, AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default) =>
        new AdvisoryLocks(dataSource).AcquireInTransactionAsync(key, timeout, mode, cancellationToken);
}
