using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// Advisory locks held by handles: each lock gets its own connection from the data source and keeps it until the
/// <see cref="AdvisoryLockHandle"/> is disposed. Use them to serialize work that spans several transactions (or none).
/// <c>services.AddRowLock()</c> registers one built from the container's <see cref="NpgsqlDataSource"/> and
/// <see cref="ILoggerFactory"/>; otherwise create one per data source and keep it.
/// </summary>
/// <remarks>
/// Logs go to the category <c>RowLock.AdvisoryLocks</c> (event ids in <see cref="RowLockEventIds"/>), through a logger
/// created once here: it lives as long as this object, and handles keep using it after the call that made them.
/// Logging happens after each step is done, so a logger that throws fails the call but never leaves a lock behind.
/// Timeouts mean the same in every method: <see cref="TimeSpan.Zero"/> does not wait; null or
/// <see cref="Timeout.InfiniteTimeSpan"/> waits as long as it takes; a positive timeout waits at most that long (up to
/// 24.8 days); a negative one is refused before anything is sent.
/// </remarks>
public sealed partial class AdvisoryLocks
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly ILogger _logger;
    private readonly bool _multiplexing;

    /// <summary>Creates the service over a data source.</summary>
    /// <param name="dataSource">Where the handles' connections come from. Must not multiplex (see <see cref="NotSupportedException"/> on the acquire methods).</param>
    /// <param name="loggerFactory">Where to log; null logs nothing.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is null.</exception>
    public AdvisoryLocks(NpgsqlDataSource dataSource, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        _dataSource = dataSource;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger(AdvisoryLog.Category);
        _multiplexing = Multiplexes(dataSource.ConnectionString);
    }

    /// <summary>
    /// How long a session-lock acquire may wait before it logs one Warning (event <see cref="RowLockEventIds.LockWaitPassedThreshold"/>)
    /// naming the session it waits behind and what that session is doing, while the wait goes on, and counts it in
    /// <c>rowlock.lock.wait.long</c>. The check is one lock-wait snapshot on another connection of the data source, made
    /// only when the threshold passes.
    /// </summary>
    /// <value>Default 5 seconds; <see cref="TimeSpan.Zero"/> or <see cref="Timeout.InfiniteTimeSpan"/> turns it off.</value>
    public TimeSpan LockWaitWarningThreshold { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Whether a connection string turns multiplexing on. The data-source extension methods build one of these per call,
    /// and parsing a connection string costs about 7 KB of garbage and several microseconds, so only a string that names
    /// the setting at all is parsed.
    /// </summary>
    internal static bool Multiplexes(string connectionString) =>
        connectionString.Contains("multiplex", StringComparison.OrdinalIgnoreCase)
        && new NpgsqlConnectionStringBuilder(connectionString).Multiplexing;

    /// <summary>
    /// Tries to take a session-level lock (<c>pg_advisory_lock</c>) on a connection of its own. With the default timeout
    /// (zero) it does not wait; with a positive timeout it waits at most that long; <see cref="Timeout.InfiniteTimeSpan"/>
    /// waits as long as it takes.
    /// </summary>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no lock behind.</param>
    /// <returns>The handle holding the lock, or null when the lock was not granted in time. Dispose the handle to release.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or longer than 24.8 days.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    /// <exception cref="ObjectDisposedException">The data source is disposed.</exception>
    public Task<AdvisoryLockHandle?> TryAcquireAsync(AdvisoryLockKey key, TimeSpan timeout = default,
        AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        var wait = Validate(timeout, mode);
        return AcquireSessionAsync(key, wait, mode, cancellationToken);
    }

    /// <summary>Takes a session-level lock on a connection of its own, waiting while another session holds it.</summary>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">The longest wait: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no lock behind.</param>
    /// <returns>The handle holding the lock. Dispose it to release.</returns>
    /// <exception cref="LockNotAvailableException">The lock was not granted within <paramref name="timeout"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or longer than 24.8 days.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    /// <exception cref="ObjectDisposedException">The data source is disposed.</exception>
    public async Task<AdvisoryLockHandle> AcquireAsync(AdvisoryLockKey key, TimeSpan? timeout = null,
        AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        var wait = Validate(timeout, mode);
        return await AcquireSessionAsync(key, wait, mode, cancellationToken).ConfigureAwait(false)
            ?? throw new LockNotAvailableException(AdvisoryMessages.NotGranted(key, wait!.Value), null);
    }

    /// <summary>
    /// Like <see cref="TryAcquireAsync"/>, but the handle holds a transaction-scoped lock (<c>pg_advisory_xact_lock</c>)
    /// inside a transaction it keeps open, and disposing it rolls that transaction back. Use this mode behind PgBouncer
    /// transaction pooling, where a session lock cannot be held: the open transaction pins one server connection for the
    /// handle's lifetime. Keep such handles short (mind PgBouncer's idle_transaction_timeout).
    /// </summary>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait; infinite waits as long as it takes.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no lock behind.</param>
    /// <returns>The handle, or null when the lock was not granted in time.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or longer than 24.8 days.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    /// <exception cref="ObjectDisposedException">The data source is disposed.</exception>
    public Task<AdvisoryLockHandle?> TryAcquireInTransactionAsync(AdvisoryLockKey key, TimeSpan timeout = default,
        AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        var wait = Validate(timeout, mode);
        return AcquireTransactionHeldAsync(key, wait, mode, cancellationToken);
    }

    /// <summary>
    /// Like <see cref="AcquireAsync"/>, but held as a transaction-scoped lock inside a transaction the handle keeps open
    /// (see <see cref="TryAcquireInTransactionAsync"/>): the mode for PgBouncer transaction pooling.
    /// </summary>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">The longest wait: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no lock behind.</param>
    /// <returns>The handle holding the lock. Dispose it to release.</returns>
    /// <exception cref="LockNotAvailableException">The lock was not granted within <paramref name="timeout"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or longer than 24.8 days.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    /// <exception cref="ObjectDisposedException">The data source is disposed.</exception>
    public async Task<AdvisoryLockHandle> AcquireInTransactionAsync(AdvisoryLockKey key, TimeSpan? timeout = null,
        AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        var wait = Validate(timeout, mode);
        return await AcquireTransactionHeldAsync(key, wait, mode, cancellationToken).ConfigureAwait(false)
            ?? throw new LockNotAvailableException(AdvisoryMessages.NotGranted(key, wait!.Value), null);
    }

    /// <summary>Checks everything before anything is sent. Returns the wait: null = as long as it takes, zero = none.</summary>
    private TimeSpan? Validate(TimeSpan? timeout, AdvisoryLockMode mode)
    {
        AdvisorySql.ValidateMode(mode);
        var wait = LockTimeout.ValidateAdvisory(timeout, nameof(timeout));
        if (_multiplexing)
        {
            // The handle's watch (NpgsqlConnection.WaitAsync) and its pinned session do not exist with multiplexing.
            throw new NotSupportedException(AdvisoryMessages.Multiplexing);
        }

        return wait;
    }

    private void NotGranted(AdvisoryLockKey key, AdvisoryLockMode mode, TimeSpan? wait)
    {
        RowLockTelemetry.CountLockNotAvailable("advisory");
        if (wait is { } t && t > TimeSpan.Zero)
        {
            AdvisoryLog.TimedOut(_logger, key, mode, LockTimeout.Milliseconds(t));
        }
        else
        {
            AdvisoryLog.Skipped(_logger, key, mode);
        }
    }

    private async Task<AdvisoryLockHandle?> AcquireTransactionHeldAsync(AdvisoryLockKey key, TimeSpan? wait, AdvisoryLockMode mode, CancellationToken cancellationToken)
    {
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        NpgsqlTransaction? transaction = null;
        try
        {
            transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            if (wait is null)
            {
                // "As long as it takes", whatever lock_timeout the server, role or connection string sets: this
                // transaction is the handle's own, so its lock_timeout is ours to set.
                var noTimeout = new NpgsqlCommand(LockTimeout.SetLocalNone, connection, transaction);
                await using (noTimeout.ConfigureAwait(false))
                {
                    await noTimeout.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
            }

            if ((await AdvisoryLockTransactionExtensions.TakeAsync(connection, transaction, key, wait, mode, cancellationToken).ConfigureAwait(false)).Acquired)
            {
                AdvisoryLog.Acquired(_logger, key, mode, "transaction");
                return new AdvisoryLockHandle(new HeldAdvisoryLock(_dataSource, connection, key, mode, _logger, transaction));
            }
        }
        catch
        {
            await RollBackAndCloseAsync(transaction, connection).ConfigureAwait(false);
            throw;
        }

        await RollBackAndCloseAsync(transaction, connection).ConfigureAwait(false);
        NotGranted(key, mode, wait);
        return null;
    }

    /// <summary>Disposing the transaction rolls it back, which releases any transaction-scoped lock it took.</summary>
    private async Task RollBackAndCloseAsync(NpgsqlTransaction? transaction, NpgsqlConnection connection)
    {
        if (transaction is not null)
        {
            await LockConnection.ReleaseOrDiscardAsync(_dataSource, connection, () => transaction.DisposeAsync().AsTask()).ConfigureAwait(false);
        }

        await connection.DisposeAsync().ConfigureAwait(false);
    }

    private async Task<AdvisoryLockHandle?> AcquireSessionAsync(AdvisoryLockKey key, TimeSpan? wait, AdvisoryLockMode mode, CancellationToken cancellationToken)
    {
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var inTransaction = false;
        var start = System.Diagnostics.Stopwatch.GetTimestamp(); // rowlock.lock.wait.duration
        try
        {
            // First without waiting, whatever the timeout: an uncontended acquire is then one plain statement, as cheap
            // as a hand-written pg_advisory_lock. It cannot overtake sessions already waiting (PostgreSQL refuses a
            // request that conflicts with a queued one), and no lock_timeout applies to a call that does not wait.
            bool acquired;
            var tryCommand = AdvisorySql.Command(AdvisorySql.TrySession(mode), key, connection, null);
            await using (tryCommand.ConfigureAwait(false))
            {
                acquired = await tryCommand.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is true;
            }

            if (!acquired && wait != TimeSpan.Zero)
            {
                // lock_timeout must not stay on the pooled session: set it LOCAL in a short transaction (0 for "as long as
                // it takes", overriding a lock_timeout the server, role or connection string sets). A session lock taken
                // inside a transaction outlives its COMMIT (and its ROLLBACK).
                inTransaction = true;
                using (LockWaitWatch.Start(_dataSource, connection.ProcessID, LockWaitWarningThreshold, _logger, "advisory"))
                {
                    acquired = await WaitInTransactionAsync(connection, key, wait, mode, cancellationToken).ConfigureAwait(false);
                }

                inTransaction = false;
            }

            RowLockHistograms.RecordLockWait(start, "advisory", acquired ? "acquired" : "not_available");
            start = 0; // recorded: a logger that throws below is not a failed wait
            if (acquired)
            {
                // Logged before the handle exists: should the logger throw, the catch below releases the lock.
                AdvisoryLog.Acquired(_logger, key, mode, "session");
                return new AdvisoryLockHandle(new HeldAdvisoryLock(_dataSource, connection, key, mode, _logger, transaction: null));
            }
        }
        catch (Exception e)
        {
            if (start != 0)
            {
                RowLockHistograms.RecordLockWait(start, "advisory", RowLockHistograms.FailureOutcome(e));
            }

            await AbandonAsync(connection, inTransaction).ConfigureAwait(false);
            throw;
        }

        await connection.DisposeAsync().ConfigureAwait(false);
        NotGranted(key, mode, wait);
        return null;
    }

    private async Task<bool> WaitInTransactionAsync(NpgsqlConnection connection, AdvisoryLockKey key, TimeSpan? timeout, AdvisoryLockMode mode, CancellationToken cancellationToken)
    {
        var (acquired, grantedAtTimeout) = await SessionLockWait.WaitAsync(connection, key, timeout, mode, cancellationToken).ConfigureAwait(false);
        if (grantedAtTimeout)
        {
            AdvisoryLog.GrantedAtTimeout(_logger, key);
        }

        return acquired;
    }

    /// <summary>
    /// After a failed or cancelled acquire: the lock may have been granted just as the wait was cancelled, so drop every
    /// session lock this connection holds before it goes back to the pool; if even that fails, do not pool it.
    /// </summary>
    private async Task AbandonAsync(NpgsqlConnection connection, bool inTransaction)
    {
        await LockConnection.ReleaseOrDiscardAsync(_dataSource, connection, async () =>
        {
            if (connection.State == System.Data.ConnectionState.Open)
            {
                // UNLISTEN: a semaphore waiter listens on its connection while it holds the turnstile.
                var cleanup = new NpgsqlCommand(inTransaction ? "ROLLBACK; UNLISTEN *; SELECT pg_advisory_unlock_all()" : "UNLISTEN *; SELECT pg_advisory_unlock_all()", connection);
                await using (cleanup.ConfigureAwait(false))
                {
                    await cleanup.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
        }).ConfigureAwait(false);
        await connection.DisposeAsync().ConfigureAwait(false);
    }
}
