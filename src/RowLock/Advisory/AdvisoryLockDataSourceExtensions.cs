using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// Session-level advisory locks: each lock gets its own connection from the data source, held in an
/// <see cref="AdvisoryLockHandle"/> until you dispose it. Use them to serialize work that spans several transactions
/// (or none). They need a real session, so they do not work behind PgBouncer transaction pooling.
/// </summary>
public static class AdvisoryLockDataSourceExtensions
{
    /// <summary>
    /// Tries to take the lock on a connection of its own. With the default timeout (zero) it does not wait; with a
    /// positive timeout it waits at most that long (<see cref="Timeout.InfiniteTimeSpan"/> waits as long as it takes).
    /// </summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no lock behind.</param>
    /// <returns>The handle holding the lock, or null when the lock was not granted in time. Dispose the handle to release.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite).</exception>
    /// <exception cref="ObjectDisposedException">The data source is disposed.</exception>
    public static Task<AdvisoryLockHandle?> TryAcquireAdvisoryLockAsync(this NpgsqlDataSource dataSource, AdvisoryLockKey key,
        TimeSpan timeout = default, AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        AdvisorySql.ValidateMode(mode);
        return AcquireSessionAsync(dataSource, key, LockTimeout.ValidateTry(timeout, nameof(timeout)), mode, cancellationToken);
    }

    /// <summary>
    /// Takes the lock on a connection of its own, waiting while another session holds it.
    /// </summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">The longest wait; null waits as long as it takes.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no lock behind.</param>
    /// <returns>The handle holding the lock. Dispose it to release.</returns>
    /// <exception cref="LockNotAvailableException">The lock was not granted within <paramref name="timeout"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is zero or negative.</exception>
    /// <exception cref="ObjectDisposedException">The data source is disposed.</exception>
    public static async Task<AdvisoryLockHandle> AcquireAdvisoryLockAsync(this NpgsqlDataSource dataSource, AdvisoryLockKey key,
        TimeSpan? timeout = null, AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        AdvisorySql.ValidateMode(mode);
        timeout = LockTimeout.ValidateWait(timeout, nameof(timeout));
        return await AcquireSessionAsync(dataSource, key, timeout, mode, cancellationToken).ConfigureAwait(false)
            ?? throw new LockNotAvailableException(AdvisoryMessages.NotGranted(key, timeout!.Value), null);
    }

    /// <summary>
    /// Like <see cref="TryAcquireAdvisoryLockAsync"/>, but the handle holds a transaction-scoped lock
    /// (<c>pg_advisory_xact_lock</c>) inside a transaction it keeps open, and disposing it rolls that transaction back.
    /// Use this mode behind PgBouncer transaction pooling, where a session lock cannot be held: the open transaction pins
    /// one server connection for the handle's lifetime. Keep such handles short (mind PgBouncer's idle_transaction_timeout).
    /// </summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The handle, or null when the lock was not granted in time.</returns>
    public static async Task<AdvisoryLockHandle?> TryAcquireAdvisoryLockInTransactionAsync(this NpgsqlDataSource dataSource, AdvisoryLockKey key,
        TimeSpan timeout = default, AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        AdvisorySql.ValidateMode(mode);
        return await AcquireInTransactionAsync(dataSource, key, LockTimeout.ValidateTry(timeout, nameof(timeout)), mode, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Like <see cref="AcquireAdvisoryLockAsync"/>, but held as a transaction-scoped lock inside a transaction the handle
    /// keeps open (see <see cref="TryAcquireAdvisoryLockInTransactionAsync"/>): the mode for PgBouncer transaction pooling.
    /// </summary>
    /// <param name="dataSource">Where the handle's connection comes from.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">The longest wait; null waits as long as it takes.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The handle holding the lock. Dispose it to release.</returns>
    /// <exception cref="LockNotAvailableException">The lock was not granted within <paramref name="timeout"/>.</exception>
    public static async Task<AdvisoryLockHandle> AcquireAdvisoryLockInTransactionAsync(this NpgsqlDataSource dataSource, AdvisoryLockKey key,
        TimeSpan? timeout = null, AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        AdvisorySql.ValidateMode(mode);
        timeout = LockTimeout.ValidateWait(timeout, nameof(timeout));
        return await AcquireInTransactionAsync(dataSource, key, timeout, mode, cancellationToken).ConfigureAwait(false)
            ?? throw new LockNotAvailableException(AdvisoryMessages.NotGranted(key, timeout!.Value), null);
    }

    // timeout: null waits forever; zero does not wait; positive waits at most that long.
    private static async Task<AdvisoryLockHandle?> AcquireInTransactionAsync(NpgsqlDataSource dataSource, AdvisoryLockKey key, TimeSpan? timeout,
        AdvisoryLockMode mode, CancellationToken cancellationToken)
    {
        var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        NpgsqlTransaction? transaction = null;
        try
        {
            transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            bool acquired;
            if (timeout == TimeSpan.Zero)
            {
                acquired = await transaction.TryAcquireAdvisoryLockAsync(key, mode, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                try
                {
                    await transaction.AcquireAdvisoryLockAsync(key, timeout, mode, cancellationToken).ConfigureAwait(false);
                    acquired = true;
                }
                catch (LockNotAvailableException)
                {
                    acquired = false;
                }
            }

            if (acquired)
            {
                return new AdvisoryLockHandle(connection, key, mode, RowLockLogging.Advisory, transaction);
            }
        }
        catch
        {
            await DisposeQuietlyAsync(transaction, connection).ConfigureAwait(false);
            throw;
        }

        await DisposeQuietlyAsync(transaction, connection).ConfigureAwait(false);
        return null;
    }

    /// <summary>Disposing the transaction rolls it back, which releases any transaction-scoped lock it took.</summary>
    private static async Task DisposeQuietlyAsync(NpgsqlTransaction? transaction, NpgsqlConnection connection)
    {
        if (transaction is not null)
        {
            await LockConnection.ReleaseOrDiscardAsync(connection, () => transaction.DisposeAsync().AsTask()).ConfigureAwait(false);
        }

        await connection.DisposeAsync().ConfigureAwait(false);
    }

    // timeout: null waits forever; zero does not wait; positive waits at most that long.
    private static async Task<AdvisoryLockHandle?> AcquireSessionAsync(NpgsqlDataSource dataSource, AdvisoryLockKey key, TimeSpan? timeout,
        AdvisoryLockMode mode, CancellationToken cancellationToken)
    {
        var logger = RowLockLogging.Advisory;
        var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var inTransaction = false;
        try
        {
            bool acquired;
            if (timeout is null)
            {
                acquired = await ScalarAsync(AdvisorySql.Command(AdvisorySql.WaitSession(mode), key, connection, null), cancellationToken).ConfigureAwait(false) is not false;
            }
            else if (timeout == TimeSpan.Zero)
            {
                acquired = await ScalarAsync(AdvisorySql.Command(AdvisorySql.TrySession(mode), key, connection, null), cancellationToken).ConfigureAwait(false) is true;
            }
            else
            {
                // lock_timeout must not stay on the pooled session: set it LOCAL in a short transaction. A session lock
                // taken inside a transaction outlives its COMMIT.
                inTransaction = true;
                acquired = await WaitWithTimeoutAsync(connection, key, timeout.Value, mode, cancellationToken).ConfigureAwait(false);
                inTransaction = false;
            }

            if (!acquired)
            {
                if (timeout is { } t && t > TimeSpan.Zero)
                {
                    Log.AdvisoryTimedOut(logger, key, mode, LockTimeout.Milliseconds(t));
                    RowLockTelemetry.CountLockNotAvailable("advisory");
                }
                else
                {
                    Log.AdvisorySkipped(logger, key, mode);
                }

                await connection.DisposeAsync().ConfigureAwait(false);
                return null;
            }

            Log.AdvisoryAcquired(logger, key, mode, "session");
            return new AdvisoryLockHandle(connection, key, mode, logger);
        }
        catch
        {
            await AbandonAsync(connection, inTransaction).ConfigureAwait(false);
            throw;
        }
    }

    private static async Task<bool> WaitWithTimeoutAsync(NpgsqlConnection connection, AdvisoryLockKey key, TimeSpan timeout, AdvisoryLockMode mode, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("BEGIN"),
                new NpgsqlBatchCommand(LockTimeout.SetLocal(timeout)),
                AdvisorySql.Call(AdvisorySql.WaitSession(mode), key),
                new NpgsqlBatchCommand("COMMIT"),
            },
        };
        await using (batch.ConfigureAwait(false))
        {
            try
            {
                await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                return true;
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
            {
                var rollback = new NpgsqlCommand("ROLLBACK", connection);
                await using (rollback.ConfigureAwait(false))
                {
                    await rollback.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }

                return false;
            }
        }
    }

    /// <summary>
    /// After a failed or cancelled acquire: the lock may have been granted just as the wait was cancelled, so drop every
    /// session lock this connection holds before it goes back to the pool; if even that fails, do not pool it.
    /// </summary>
    private static async Task AbandonAsync(NpgsqlConnection connection, bool inTransaction)
    {
        await LockConnection.ReleaseOrDiscardAsync(connection, async () =>
        {
            if (connection.State == System.Data.ConnectionState.Open)
            {
                var cleanup = new NpgsqlCommand(inTransaction ? "ROLLBACK; SELECT pg_advisory_unlock_all()" : "SELECT pg_advisory_unlock_all()", connection);
                await using (cleanup.ConfigureAwait(false))
                {
                    await cleanup.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
        }).ConfigureAwait(false);
        await connection.DisposeAsync().ConfigureAwait(false);
    }

    private static async Task<object?> ScalarAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        await using (command.ConfigureAwait(false))
        {
            return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}
