using System.Data;
using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// Counting semaphores and several advisory locks at once in the caller's transaction: the locks are
/// transaction-scoped (<c>pg_advisory_xact_lock</c>) and released by its COMMIT or ROLLBACK, never earlier. They work
/// behind PgBouncer transaction pooling. These methods do not log.
/// </summary>
/// <remarks>
/// While all slots are taken, the wait happens on a second connection from the same data source (a clone of the
/// transaction's), which queues for the semaphore's turnstile and listens for releases; the slot itself is taken in the
/// caller's transaction. A COMMIT that releases a slot wakes the head of the queue at once (a NOTIFY queued when the slot
/// was taken); a ROLLBACK sends no notification, so the head of the queue sees that slot within 500 ms.
/// A transaction is one holder: acquiring the same semaphore again in it may return a slot it already holds, because
/// advisory locks are re-entrant.
/// </remarks>
public static class SemaphoreTransactionExtensions
{
    private const string SetSavepoint = "rowlock_advisory_set";

    /// <summary>Tries to take one of <paramref name="maxCount"/> slots of the semaphore named <paramref name="name"/> for the rest of the transaction.</summary>
    /// <param name="transaction">An open transaction; the slot is held until it ends.</param>
    /// <param name="name">The semaphore's name (see <see cref="SemaphoreKey.FromName"/>).</param>
    /// <param name="maxCount">How many holders at once. Every user of the semaphore must pass the same count.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait; infinite waits as long as it takes.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The slot taken (0 to <paramref name="maxCount"/> - 1), or null when none was free in time (the transaction is still usable).</returns>
    /// <exception cref="ArgumentException"><paramref name="name"/> is null, empty or not valid UTF-16.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The count or the timeout is out of range. Nothing was sent.</exception>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    /// <exception cref="NotSupportedException">A wait was asked for on a multiplexing connection. Nothing was sent.</exception>
    public static Task<int?> TryAcquireSemaphoreAsync(this NpgsqlTransaction transaction, string name, int maxCount,
        TimeSpan timeout = default, CancellationToken cancellationToken = default) =>
        TryAcquireSemaphoreAsync(transaction, SemaphoreKey.FromName(name), maxCount, timeout, cancellationToken);

    /// <summary>Like <see cref="TryAcquireSemaphoreAsync(NpgsqlTransaction, string, int, TimeSpan, CancellationToken)"/>, for a semaphore key (e.g. an explicit class id).</summary>
    /// <param name="transaction">An open transaction; the slot is held until it ends.</param>
    /// <param name="semaphore">The semaphore.</param>
    /// <param name="maxCount">How many holders at once. Every user of the semaphore must pass the same count.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait; infinite waits as long as it takes.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The slot taken, or null when none was free in time (the transaction is still usable).</returns>
    /// <exception cref="ArgumentOutOfRangeException">The count or the timeout is out of range. Nothing was sent.</exception>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    /// <exception cref="NotSupportedException">A wait was asked for on a multiplexing connection. Nothing was sent.</exception>
    public static Task<int?> TryAcquireSemaphoreAsync(this NpgsqlTransaction transaction, SemaphoreKey semaphore, int maxCount,
        TimeSpan timeout = default, CancellationToken cancellationToken = default)
    {
        SemaphoreKey.ValidateMaxCount(maxCount);
        var wait = LockTimeout.ValidateAdvisory(timeout, nameof(timeout));
        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));
        return TakeSlotAsync(connection, transaction, semaphore, maxCount, wait, cancellationToken);
    }

    /// <summary>Takes one of <paramref name="maxCount"/> slots of the semaphore named <paramref name="name"/> for the rest of the transaction, waiting first come, first served.</summary>
    /// <param name="transaction">An open transaction; the slot is held until it ends.</param>
    /// <param name="name">The semaphore's name (see <see cref="SemaphoreKey.FromName"/>).</param>
    /// <param name="maxCount">How many holders at once. Every user of the semaphore must pass the same count.</param>
    /// <param name="timeout">The longest wait: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The slot taken (0 to <paramref name="maxCount"/> - 1).</returns>
    /// <exception cref="LockNotAvailableException">No slot was free within <paramref name="timeout"/>. The transaction is still usable.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is null, empty or not valid UTF-16.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The count or the timeout is out of range. Nothing was sent.</exception>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    /// <exception cref="NotSupportedException">A wait was asked for on a multiplexing connection. Nothing was sent.</exception>
    public static Task<int> AcquireSemaphoreAsync(this NpgsqlTransaction transaction, string name, int maxCount,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        AcquireSemaphoreAsync(transaction, SemaphoreKey.FromName(name), maxCount, timeout, cancellationToken);

    /// <summary>Like <see cref="AcquireSemaphoreAsync(NpgsqlTransaction, string, int, TimeSpan?, CancellationToken)"/>, for a semaphore key (e.g. an explicit class id).</summary>
    /// <param name="transaction">An open transaction; the slot is held until it ends.</param>
    /// <param name="semaphore">The semaphore.</param>
    /// <param name="maxCount">How many holders at once. Every user of the semaphore must pass the same count.</param>
    /// <param name="timeout">The longest wait: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The slot taken.</returns>
    /// <exception cref="LockNotAvailableException">No slot was free within <paramref name="timeout"/>. The transaction is still usable.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The count or the timeout is out of range. Nothing was sent.</exception>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    /// <exception cref="NotSupportedException">A wait was asked for on a multiplexing connection. Nothing was sent.</exception>
    public static async Task<int> AcquireSemaphoreAsync(this NpgsqlTransaction transaction, SemaphoreKey semaphore, int maxCount,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        SemaphoreKey.ValidateMaxCount(maxCount);
        var wait = LockTimeout.ValidateAdvisory(timeout, nameof(timeout));
        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));
        return await TakeSlotAsync(connection, transaction, semaphore, maxCount, wait, cancellationToken).ConfigureAwait(false)
            ?? throw new LockNotAvailableException(AdvisoryMessages.SemaphoreFull(semaphore, maxCount, wait!.Value), null);
    }

    /// <summary>
    /// Takes several transaction-scoped advisory locks, all or none, in ascending key order (not the order given, not
    /// name order), so that two callers asking for overlapping sets never deadlock. The locks are taken inside a
    /// savepoint: when one is not granted in time, or the wait is cancelled, rolling back to it releases the ones taken.
    /// </summary>
    /// <param name="transaction">An open transaction; the locks are held until it ends.</param>
    /// <param name="keys">The locks (at least one; duplicates count once).</param>
    /// <param name="timeout">The longest wait for all of them: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="mode">Exclusive or shared, for every lock.</param>
    /// <param name="cancellationToken">Cancels the wait; none of the locks stays held.</param>
    /// <exception cref="LockNotAvailableException">Some lock was not granted in time; none is held and the transaction is still usable.</exception>
    /// <exception cref="ArgumentException"><paramref name="keys"/> is empty. Nothing was sent.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is out of range. Nothing was sent.</exception>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    public static async Task AcquireAdvisoryLocksAsync(this NpgsqlTransaction transaction, IEnumerable<AdvisoryLockKey> keys,
        TimeSpan? timeout = null, AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        var ordered = AdvisoryLockKeyOrder.Sort(keys, nameof(keys));
        AdvisorySql.ValidateMode(mode);
        var wait = LockTimeout.ValidateAdvisory(timeout, nameof(timeout));
        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));
        await ExecuteAsync(connection, transaction, $"SAVEPOINT {SetSavepoint}", cancellationToken).ConfigureAwait(false);
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        AdvisoryLockKey? refused = null;
        PostgresException? refusal = null;
        try
        {
            foreach (var key in ordered)
            {
                var left = wait == TimeSpan.Zero || SessionLockWait.Expired(start, wait) ? TimeSpan.Zero : SessionLockWait.Remaining(start, wait);
                var outcome = await AdvisoryLockTransactionExtensions.TakeAsync(connection, transaction, key, left, mode, cancellationToken).ConfigureAwait(false);
                if (!outcome.Acquired)
                {
                    refused = key;
                    refusal = outcome.Refusal;
                    break;
                }
            }
        }
        catch
        {
            await RollBackSetAsync(connection, transaction).ConfigureAwait(false);
            throw;
        }

        if (refused is { } notGranted)
        {
            await ExecuteAsync(connection, transaction, $"ROLLBACK TO SAVEPOINT {SetSavepoint}; RELEASE SAVEPOINT {SetSavepoint}", CancellationToken.None).ConfigureAwait(false);
            RowLockTelemetry.CountLockNotAvailable("advisory");
            throw new LockNotAvailableException(AdvisoryMessages.NotGranted(notGranted, wait!.Value), refusal);
        }

        await ExecuteAsync(connection, transaction, $"RELEASE SAVEPOINT {SetSavepoint}", CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>After a failed or cancelled wait: undo every lock the set took. A broken connection has no locks left to undo.</summary>
    private static async Task RollBackSetAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        try
        {
            await ExecuteAsync(connection, transaction, $"ROLLBACK TO SAVEPOINT {SetSavepoint}; RELEASE SAVEPOINT {SetSavepoint}", CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException)
        {
            // The connection broke (its locks went with it) or the transaction is unusable: the caller's exception says more.
        }
    }

    private static async Task<int?> TakeSlotAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, SemaphoreKey semaphore, int maxCount,
        TimeSpan? wait, CancellationToken cancellationToken)
    {
        if (wait != TimeSpan.Zero && AdvisoryLocks.Multiplexes(connection.ConnectionString))
        {
            throw new NotSupportedException(AdvisoryMessages.Multiplexing);
        }

        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            var slot = await ScanAsync(connection, transaction, SemaphoreSql.TransactionFastPath, semaphore, maxCount, cancellationToken).ConfigureAwait(false);
            if (slot < 0 && wait != TimeSpan.Zero)
            {
                slot = await WaitOnHelperAsync(connection, transaction, semaphore, maxCount, start, wait, cancellationToken).ConfigureAwait(false);
            }

            RowLockHistograms.RecordLockWait(start, "semaphore", slot >= 0 ? "acquired" : "not_available");
            if (slot < 0)
            {
                RowLockTelemetry.CountLockNotAvailable("semaphore");
                return null;
            }

            return slot;
        }
        catch (Exception e)
        {
            RowLockHistograms.RecordLockWait(start, "semaphore", RowLockHistograms.FailureOutcome(e));
            throw;
        }
    }

    /// <summary>
    /// Queues for the turnstile and listens on a helper connection (a clone of the transaction's, from the same pool),
    /// and takes the slot in the caller's transaction when the helper is at the head of the queue and a slot is free.
    /// </summary>
    private static async Task<int> WaitOnHelperAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, SemaphoreKey semaphore, int maxCount,
        long start, TimeSpan? wait, CancellationToken cancellationToken)
    {
        var helper = (NpgsqlConnection)((ICloneable)connection).Clone();
        await using (helper.ConfigureAwait(false))
        {
            await helper.OpenAsync(cancellationToken).ConfigureAwait(false);
            using var turnstile = new SemaphoreTurnstile(helper, semaphore);
            try
            {
                var queued = await turnstile.QueueAsync(SessionLockWait.Remaining(start, wait), firstLook: null, cancellationToken).ConfigureAwait(false);
                if (queued == -2)
                {
                    return -1;
                }

                var slot = await turnstile.FindSlotAsync(ct => ScanAsync(connection, transaction, SemaphoreSql.TransactionScan, semaphore, maxCount, ct),
                    lookNow: true, start, wait, cancellationToken).ConfigureAwait(false);
                await turnstile.LeaveAsync(turnstileHeld: true).ConfigureAwait(false);
                return slot;
            }
            catch
            {
                // The helper may hold the turnstile and listen: drop both before it goes back to the pool, or do not pool it.
                await LockConnection.ReleaseOrDiscardAsync(null, helper, async () =>
                {
                    if (helper.FullState == ConnectionState.Open)
                    {
                        await ExecuteAsync(helper, null, turnstile.InTransaction ? "ROLLBACK; UNLISTEN *; SELECT pg_advisory_unlock_all()" : "UNLISTEN *; SELECT pg_advisory_unlock_all()", CancellationToken.None).ConfigureAwait(false);
                    }
                }).ConfigureAwait(false);
                throw;
            }
        }
    }

    private static async Task<int> ScanAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql, SemaphoreKey semaphore, int maxCount,
        CancellationToken cancellationToken)
    {
        var command = SemaphoreSql.Command(sql, semaphore, maxCount, connection, transaction);
        await using (command.ConfigureAwait(false))
        {
            return (int)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken cancellationToken)
    {
        var command = new NpgsqlCommand(sql, connection, transaction);
        await using (command.ConfigureAwait(false))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}
