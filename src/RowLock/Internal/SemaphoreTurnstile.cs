using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// The waiting half of a semaphore, on a connection of the library's own (the listener). Waiters queue for the
/// turnstile lock <c>(classId, -1)</c> in PostgreSQL's own lock queue (first come, first served); the one holding it
/// listens on the semaphore's channel and looks for a free slot, then waits for a NOTIFY from a release (or at most
/// <see cref="RecheckInterval"/>, in case a slot was freed without one: a rolled-back transaction, a killed backend)
/// before it looks again. It lets the turnstile go when it has a slot or its time is up, and the next waiter takes over.
/// </summary>
/// <remarks>
/// The queue batch is BEGIN; SET LOCAL lock_timeout; pg_advisory_lock(turnstile); COMMIT; LISTEN; [first look]: when the
/// turnstile is handed over, the new holder's backend listens and looks without waiting for its client. LISTEN comes
/// before every look, and a release unlocks its slot before it checks for waiters, so a release is either seen by the
/// look or notifies the listener. Dispose detaches the notification counter; it sends nothing.
/// </remarks>
internal sealed class SemaphoreTurnstile : IDisposable
{
    /// <summary>The longest the head of the queue sleeps between two looks when no release notifies it.</summary>
    public static readonly TimeSpan RecheckInterval = TimeSpan.FromMilliseconds(500);

    private readonly NpgsqlConnection _listener;
    private readonly SemaphoreKey _semaphore;
    private int _notifications;

    public SemaphoreTurnstile(NpgsqlConnection listener, SemaphoreKey semaphore)
    {
        _listener = listener;
        _semaphore = semaphore;
        listener.Notification += OnNotification;
    }

    /// <summary>True once the listener's session may be listening: it must UNLISTEN (or be discarded) before it is reused.</summary>
    public bool Listening { get; private set; }

    /// <summary>True while the listener's session may be inside the queue batch's transaction.</summary>
    public bool InTransaction { get; private set; }

    /// <summary>
    /// Queues for the turnstile for at most <paramref name="timeout"/> (null: as long as it takes). Granted: LISTENs, then runs
    /// <paramref name="firstLook"/> (if any) in the same batch and returns its slot (-1 when none). Not granted in time: -2.
    /// Granted just as the timeout fired: -3 (listening, not looked yet).
    /// </summary>
    public async Task<int> QueueAsync(TimeSpan? timeout, NpgsqlBatchCommand? firstLook, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch(_listener)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("BEGIN"),
                new NpgsqlBatchCommand(timeout is { } t ? LockTimeout.SetLocal(t) : LockTimeout.SetLocalNone),
                AdvisorySql.Call(AdvisorySql.WaitSession(AdvisoryLockMode.Exclusive), _semaphore.TurnstileKey),
                new NpgsqlBatchCommand("COMMIT"),
                new NpgsqlBatchCommand(SemaphoreSql.Listen(_semaphore)),
            },
        };
        if (firstLook is not null)
        {
            batch.BatchCommands.Add(firstLook);
        }

        await using (batch.ConfigureAwait(false))
        {
            InTransaction = true;
            Listening = true;
            try
            {
                var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    var slot = -1;
                    do
                    {
                        if (firstLook is not null && await reader.ReadAsync(cancellationToken).ConfigureAwait(false) && reader.FieldCount == 2)
                        {
                            slot = reader.GetInt32(0);
                        }
                    }
                    while (await reader.NextResultAsync(cancellationToken).ConfigureAwait(false));

                    InTransaction = false;
                    return slot;
                }
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
            {
                // The turnstile may have been granted just as lock_timeout fired: a session lock outlives the ROLLBACK.
                var rollback = new NpgsqlBatch(_listener) { BatchCommands = { new NpgsqlBatchCommand("ROLLBACK"), AdvisorySql.IsHeld(_semaphore.TurnstileKey, AdvisoryLockMode.Exclusive) } };
                await using (rollback.ConfigureAwait(false))
                {
                    var held = (bool)(await rollback.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false))!;
                    InTransaction = false;
                    if (!held)
                    {
                        Listening = false; // the batch stopped before its LISTEN
                        return -2;
                    }
                }

                await ExecuteAsync(SemaphoreSql.Listen(_semaphore), cancellationToken).ConfigureAwait(false);
                return -3;
            }
        }
    }

    /// <summary>
    /// With the turnstile held and listening: runs <paramref name="look"/> until it returns a slot (returned) or the wait that
    /// started at <paramref name="start"/> runs out (-1). <paramref name="lookNow"/> false: a look just found nothing.
    /// </summary>
    public async Task<int> FindSlotAsync(Func<CancellationToken, Task<int>> look, bool lookNow, long start, TimeSpan? wait, CancellationToken cancellationToken)
    {
        var seen = Volatile.Read(ref _notifications);
        while (true)
        {
            if (lookNow)
            {
                seen = Volatile.Read(ref _notifications);
                var slot = await look(cancellationToken).ConfigureAwait(false);
                if (slot >= 0)
                {
                    return slot;
                }
            }

            lookNow = true;
            if (SessionLockWait.Expired(start, wait))
            {
                return -1;
            }

            if (Volatile.Read(ref _notifications) != seen)
            {
                continue; // a notification was read with the last look's results
            }

            var sleep = RecheckInterval;
            if (SessionLockWait.Remaining(start, wait) is { } left && left < sleep)
            {
                sleep = left;
            }

            await _listener.WaitAsync(sleep, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>UNLISTEN, and unlock the turnstile unless the last look did it already.</summary>
    public async Task LeaveAsync(bool turnstileHeld)
    {
        var sql = turnstileHeld
            ? $"{SemaphoreSql.Unlisten(_semaphore)}; SELECT pg_advisory_unlock({_semaphore.ClassId}, -1)"
            : SemaphoreSql.Unlisten(_semaphore);
        await ExecuteAsync(sql, CancellationToken.None).ConfigureAwait(false);
        Listening = false;
    }

    public void Dispose() => _listener.Notification -= OnNotification;

    private async Task ExecuteAsync(string sql, CancellationToken cancellationToken)
    {
        var command = new NpgsqlCommand(sql, _listener);
        await using (command.ConfigureAwait(false))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private void OnNotification(object sender, NpgsqlNotificationEventArgs e)
    {
        if (e.Channel == _semaphore.NotifyChannel)
        {
            Interlocked.Increment(ref _notifications);
        }
    }
}
