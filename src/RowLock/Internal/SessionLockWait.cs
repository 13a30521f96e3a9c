using Npgsql;

namespace RowLock.Internal;

/// <summary>Waits for a session-level advisory lock on a connection of the library's own, with a bounded wait.</summary>
internal static class SessionLockWait
{
    /// <summary>
    /// Waits at most <paramref name="timeout"/> (null: as long as it takes) in a transaction that bounds the wait with
    /// SET LOCAL lock_timeout. When the timeout fires, PostgreSQL may have granted the lock at that very moment; a session
    /// lock survives the ROLLBACK, so the rollback asks pg_locks (same round trip) whether this session holds it, and if
    /// so the caller gets it (<c>GrantedAtTimeout</c>).
    /// </summary>
    public static async Task<(bool Acquired, bool GrantedAtTimeout)> WaitAsync(NpgsqlConnection connection, AdvisoryLockKey key, TimeSpan? timeout,
        AdvisoryLockMode mode, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("BEGIN"),
                new NpgsqlBatchCommand(timeout is { } t ? LockTimeout.SetLocal(t) : LockTimeout.SetLocalNone),
                AdvisorySql.Call(AdvisorySql.WaitSession(mode), key),
                new NpgsqlBatchCommand("COMMIT"),
            },
        };
        await using (batch.ConfigureAwait(false))
        {
            try
            {
                await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                return (true, false);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
            {
                var rollback = new NpgsqlBatch(connection) { BatchCommands = { new NpgsqlBatchCommand("ROLLBACK"), AdvisorySql.IsHeld(key, mode) } };
                await using (rollback.ConfigureAwait(false))
                {
                    var held = (bool)(await rollback.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false))!;
                    return (held, held);
                }
            }
        }
    }

    /// <summary>What is left of a wait that started at <paramref name="start"/>: null when unbounded, else at least 1 ms (lock_timeout 0 means no timeout).</summary>
    public static TimeSpan? Remaining(long start, TimeSpan? wait)
    {
        if (wait is not { } w)
        {
            return null;
        }

        var left = w - System.Diagnostics.Stopwatch.GetElapsedTime(start);
        return left > TimeSpan.FromMilliseconds(1) ? left : TimeSpan.FromMilliseconds(1);
    }

    /// <summary>True when a bounded wait that started at <paramref name="start"/> has run out.</summary>
    public static bool Expired(long start, TimeSpan? wait) => wait is { } w && System.Diagnostics.Stopwatch.GetElapsedTime(start) >= w;
}
