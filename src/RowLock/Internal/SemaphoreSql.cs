using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// The statements of a semaphore. Parameters: $1 the class id, $2 the count (or the slot), and where needed the class
/// id as pg_locks shows it (an oid) and the NOTIFY channel. Slots are scanned in order and the first free one is
/// locked: the scan is a LIMIT 1 over a filter, so PostgreSQL stops at the first lock it gets.
/// </summary>
internal static class SemaphoreSql
{
    /// <summary>
    /// Session scope, no queue yet: -2 when the turnstile is held or waited for (someone is queued: do not overtake),
    /// -1 when every slot is taken, else the slot now held by this session. The turnstile is taken shared for the
    /// length of this one statement (autocommit), so arrivals do not block each other but cannot pass a queued waiter.
    /// </summary>
    public const string SessionFastPath =
        "SELECT CASE WHEN pg_try_advisory_xact_lock_shared($1, -1) THEN coalesce((SELECT s FROM generate_series(0, $2 - 1) AS s WHERE pg_try_advisory_lock($1, s) LIMIT 1), -1) ELSE -2 END";

    /// <summary>
    /// Session scope, by the holder of the turnstile: -1, or the slot now held by this session, and then the turnstile is
    /// let go in the same statement, so that the next waiter's batch goes on at once on the server, without a round trip.
    /// </summary>
    public const string SessionScan =
        "SELECT slot, CASE WHEN slot >= 0 THEN pg_advisory_unlock($1, -1) END FROM (SELECT coalesce(" +
        "(SELECT s FROM generate_series(0, $2 - 1) AS s WHERE pg_try_advisory_lock($1, s) LIMIT 1), -1) AS slot OFFSET 0) AS found";

    /// <summary>
    /// Transaction scope, no queue yet: -2 when someone holds or waits for the turnstile, -1 when every slot is taken,
    /// else the slot now held by the transaction. The turnstile is only looked at (pg_locks), never locked, because a
    /// lock taken in the caller's transaction would stay until its end. A slot taken queues a NOTIFY that its COMMIT sends.
    /// $3 is the class id as an oid (bigint), $4 the channel.
    /// </summary>
    public const string TransactionFastPath =
        "SELECT slot, CASE WHEN slot >= 0 THEN (SELECT true FROM pg_notify($4, '')) END FROM (SELECT CASE WHEN EXISTS (" +
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) " +
        "AND classid = $3::oid AND objid = 4294967295::oid AND objsubid = 2) THEN -2 " +
        "ELSE coalesce((SELECT s FROM generate_series(0, $2 - 1) AS s WHERE pg_try_advisory_xact_lock($1, s) LIMIT 1), -1) END AS slot OFFSET 0) AS found";

    /// <summary>Transaction scope, while a helper connection holds the turnstile: -1 or the slot now held by the transaction (and a NOTIFY queued for its COMMIT). $3 the channel.</summary>
    public const string TransactionScan =
        "SELECT slot, CASE WHEN slot >= 0 THEN (SELECT true FROM pg_notify($3, '')) END FROM (SELECT coalesce(" +
        "(SELECT s FROM generate_series(0, $2 - 1) AS s WHERE pg_try_advisory_xact_lock($1, s) LIMIT 1), -1) AS slot OFFSET 0) AS found";

    /// <summary>
    /// Releases a session-held slot and, when someone holds or waits for the turnstile (the shared try fails), notifies
    /// the channel so that the head of the queue looks again. The slot is unlocked first: a waiter that scanned before
    /// the unlock was already listening, so it gets the notification; one that scans after sees the slot free.
    /// True when the slot was held. $1 class id, $2 slot, $3 channel. A NOTIFY gives the statement's transaction an xid,
    /// so its commit would wait for a WAL flush (milliseconds on a slow disk) for nothing durable: synchronous_commit is
    /// turned off for that one transaction (set_config is_local), and the notification goes out as soon as it commits.
    /// </summary>
    public const string Release =
        "SELECT CASE WHEN NOT pg_advisory_unlock($1, $2) THEN false " +
        "WHEN pg_try_advisory_lock_shared($1, -1) THEN pg_advisory_unlock_shared($1, -1) " +
        "ELSE (SELECT true FROM set_config('synchronous_commit', 'off', true), pg_notify($3, '')) END";

    public static string Listen(SemaphoreKey semaphore) => $"LISTEN {semaphore.NotifyChannel}";

    public static string Unlisten(SemaphoreKey semaphore) => $"UNLISTEN {semaphore.NotifyChannel}";

    public static NpgsqlCommand Command(string sql, SemaphoreKey semaphore, int countOrSlot, NpgsqlConnection connection, NpgsqlTransaction? transaction)
    {
        var command = new NpgsqlCommand(sql, connection, transaction);
        Bind(command.Parameters, sql, semaphore, countOrSlot);
        return command;
    }

    public static NpgsqlBatchCommand Call(string sql, SemaphoreKey semaphore, int countOrSlot)
    {
        var command = new NpgsqlBatchCommand(sql);
        Bind(command.Parameters, sql, semaphore, countOrSlot);
        return command;
    }

    private static void Bind(NpgsqlParameterCollection parameters, string sql, SemaphoreKey semaphore, int countOrSlot)
    {
        parameters.Add(new NpgsqlParameter<int> { TypedValue = semaphore.ClassId });
        parameters.Add(new NpgsqlParameter<int> { TypedValue = countOrSlot });
        if (ReferenceEquals(sql, TransactionFastPath))
        {
            parameters.Add(new NpgsqlParameter<long> { TypedValue = (uint)semaphore.ClassId });
        }

        if (ReferenceEquals(sql, Release) || ReferenceEquals(sql, TransactionFastPath) || ReferenceEquals(sql, TransactionScan))
        {
            parameters.Add(new NpgsqlParameter<string> { TypedValue = semaphore.NotifyChannel });
        }
    }
}
