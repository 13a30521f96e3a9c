using Npgsql;
using RowLock.Internal;

namespace RowLock;

public sealed partial class AdvisoryLocks
{
    /// <summary>
    /// Tries to take a slot of a counting semaphore (at most <paramref name="maxCount"/> holders at once, across every
    /// process that uses the same key and count) as a session-level lock on a connection of its own. Waiters are served
    /// first come, first served; a wait does not poll the server (a release wakes the head of the queue with NOTIFY).
    /// </summary>
    /// <param name="semaphore">The semaphore, e.g. <c>SemaphoreKey.FromName("exports")</c>.</param>
    /// <param name="maxCount">How many holders at once (1 to <see cref="SemaphoreKey.MaxCount"/>). Every user of the semaphore must pass the same count.</param>
    /// <param name="timeout">How long to wait; zero (the default) means do not wait; infinite waits as long as it takes.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no slot and no place in the queue behind.</param>
    /// <returns>The handle holding a slot (its <see cref="AdvisoryLockHandle.Key"/> is the slot's lock), or null when no slot was free in time. Dispose it to release.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The count or the timeout is out of range.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    public Task<AdvisoryLockHandle?> TryAcquireSemaphoreAsync(SemaphoreKey semaphore, int maxCount, TimeSpan timeout = default,
        CancellationToken cancellationToken = default)
    {
        SemaphoreKey.ValidateMaxCount(maxCount);
        var wait = Validate(timeout, AdvisoryLockMode.Exclusive);
        return AcquireSemaphoreSessionAsync(semaphore, maxCount, wait, cancellationToken);
    }

    /// <summary>Takes a slot of a counting semaphore as a session-level lock, waiting first come, first served while all slots are taken.</summary>
    /// <param name="semaphore">The semaphore.</param>
    /// <param name="maxCount">How many holders at once (1 to <see cref="SemaphoreKey.MaxCount"/>). Every user of the semaphore must pass the same count.</param>
    /// <param name="timeout">The longest wait: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves no slot and no place in the queue behind.</param>
    /// <returns>The handle holding a slot. Dispose it to release.</returns>
    /// <exception cref="LockNotAvailableException">No slot was free within <paramref name="timeout"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The count or the timeout is out of range.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    public async Task<AdvisoryLockHandle> AcquireSemaphoreAsync(SemaphoreKey semaphore, int maxCount, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        SemaphoreKey.ValidateMaxCount(maxCount);
        var wait = Validate(timeout, AdvisoryLockMode.Exclusive);
        return await AcquireSemaphoreSessionAsync(semaphore, maxCount, wait, cancellationToken).ConfigureAwait(false)
            ?? throw new LockNotAvailableException(AdvisoryMessages.SemaphoreFull(semaphore, maxCount, wait!.Value), null);
    }

    /// <summary>
    /// Takes several session-level locks on one connection of its own, all or none, in ascending key order whatever the
    /// order given, so that two callers asking for overlapping sets never deadlock.
    /// </summary>
    /// <param name="keys">The locks (at least one; duplicates count once).</param>
    /// <param name="timeout">The longest wait for all of them together: null (the default) or infinite waits as long as it takes; zero does not wait.</param>
    /// <param name="mode">Exclusive or shared, for every lock.</param>
    /// <param name="cancellationToken">Cancels the wait. A cancelled acquire leaves none of the locks behind.</param>
    /// <returns>One handle holding every lock (<see cref="AdvisoryLockHandle.Keys"/>). Dispose it to release them all.</returns>
    /// <exception cref="LockNotAvailableException">Some lock was not granted within <paramref name="timeout"/>; the ones taken were released.</exception>
    /// <exception cref="ArgumentException"><paramref name="keys"/> is empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is out of range.</exception>
    /// <exception cref="NotSupportedException">The data source multiplexes (<c>Multiplexing=true</c>). Nothing was sent.</exception>
    public async Task<AdvisoryLockHandle> AcquireAllAsync(IEnumerable<AdvisoryLockKey> keys, TimeSpan? timeout = null,
        AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        var ordered = AdvisoryLockKeyOrder.Sort(keys, nameof(keys));
        var wait = Validate(timeout, mode);
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var inTransaction = false;
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            foreach (var key in ordered)
            {
                bool acquired;
                var tryCommand = AdvisorySql.Command(AdvisorySql.TrySession(mode), key, connection, null);
                await using (tryCommand.ConfigureAwait(false))
                {
                    acquired = await tryCommand.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is true;
                }

                if (!acquired && wait != TimeSpan.Zero && !SessionLockWait.Expired(start, wait))
                {
                    inTransaction = true;
                    acquired = await WaitInTransactionAsync(connection, key, SessionLockWait.Remaining(start, wait), mode, cancellationToken).ConfigureAwait(false);
                    inTransaction = false;
                }

                if (!acquired)
                {
                    NotGranted(key, mode, wait);
                    throw new LockNotAvailableException(AdvisoryMessages.NotGranted(key, wait!.Value), null);
                }
            }

            foreach (var key in ordered)
            {
                AdvisoryLog.Acquired(_logger, key, mode, "session");
            }

            return new AdvisoryLockHandle(new HeldAdvisoryLock(_dataSource, connection, ordered, mode, _logger));
        }
        catch
        {
            await AbandonAsync(connection, inTransaction).ConfigureAwait(false);
            throw;
        }
    }

    private async Task<AdvisoryLockHandle?> AcquireSemaphoreSessionAsync(SemaphoreKey semaphore, int maxCount, TimeSpan? wait, CancellationToken cancellationToken)
    {
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        SemaphoreTurnstile? turnstile = null;
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        var recorded = false;
        try
        {
            int slot;
            var fast = SemaphoreSql.Command(SemaphoreSql.SessionFastPath, semaphore, maxCount, connection, null);
            await using (fast.ConfigureAwait(false))
            {
                slot = (int)(await fast.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
            }

            if (slot < 0 && wait != TimeSpan.Zero)
            {
                // Queue for the turnstile; its holder is the head of the queue and the only one looking for a slot.
                turnstile = new SemaphoreTurnstile(connection, semaphore);
                slot = await turnstile.QueueAsync(SessionLockWait.Remaining(start, wait), SemaphoreSql.Call(SemaphoreSql.SessionScan, semaphore, maxCount), cancellationToken).ConfigureAwait(false);
                if (slot != -2)
                {
                    if (slot < 0)
                    {
                        slot = await turnstile.FindSlotAsync(ct => ScanAsync(connection, semaphore, maxCount, ct), lookNow: slot == -3, start, wait, cancellationToken).ConfigureAwait(false);
                    }

                    // A look that found a slot let the turnstile go in the same statement.
                    await turnstile.LeaveAsync(turnstileHeld: slot < 0).ConfigureAwait(false);
                }
            }

            RowLockHistograms.RecordLockWait(start, "semaphore", slot >= 0 ? "acquired" : "not_available");
            recorded = true;
            if (slot >= 0)
            {
                turnstile?.Dispose();
                var key = semaphore.SlotKey(slot);
                AdvisoryLog.Acquired(_logger, key, AdvisoryLockMode.Exclusive, "session");
                return new AdvisoryLockHandle(new HeldAdvisoryLock(_dataSource, connection, semaphore, slot, _logger));
            }
        }
        catch (Exception e)
        {
            if (!recorded)
            {
                RowLockHistograms.RecordLockWait(start, "semaphore", RowLockHistograms.FailureOutcome(e));
            }

            // Drops whatever this connection may hold by now: a slot, the turnstile, its LISTEN.
            turnstile?.Dispose();
            await AbandonAsync(connection, turnstile?.InTransaction == true).ConfigureAwait(false);
            throw;
        }

        turnstile?.Dispose();
        await connection.DisposeAsync().ConfigureAwait(false);
        NotGranted(semaphore.TurnstileKey, AdvisoryLockMode.Exclusive, wait);
        return null;
    }

    private static async Task<int> ScanAsync(NpgsqlConnection connection, SemaphoreKey semaphore, int maxCount, CancellationToken cancellationToken)
    {
        var scan = SemaphoreSql.Command(SemaphoreSql.SessionScan, semaphore, maxCount, connection, null);
        await using (scan.ConfigureAwait(false))
        {
            return (int)(await scan.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }
    }
}
