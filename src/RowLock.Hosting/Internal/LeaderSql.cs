namespace RowLock.Hosting.Internal;

/// <summary>
/// Every statement the elections send. The epochs table is the fence: a fenced transaction holds <c>FOR KEY SHARE</c> on
/// the election's row until it ends, and a new leader's epoch increment first takes <c>FOR UPDATE</c> on that row, which
/// conflicts with KEY SHARE: the increment cannot commit while a transaction fenced with the old epoch is open, and a
/// transaction fenced after it sees the new epoch. Lease renewals only take <c>FOR NO KEY UPDATE</c> (a plain UPDATE of a
/// non-key column), which does not conflict with KEY SHARE, so renewing never waits for the leader's own business.
/// </summary>
internal static class LeaderSql
{
    public const string Table = "rowlock_leader_epochs";

    public const string NotifyChannel = "rowlock_leader";

    public const string CreateTable = """
        CREATE TABLE IF NOT EXISTS rowlock_leader_epochs (
            name             text PRIMARY KEY,
            epoch            bigint NOT NULL DEFAULT 0,
            holder           text,
            acquired_at      timestamptz,
            released_at      timestamptz,
            lease_expires_at timestamptz
        )
        """;

    /// <summary>$1 name.</summary>
    public const string EnsureRow = "INSERT INTO rowlock_leader_epochs (name) VALUES ($1) ON CONFLICT (name) DO NOTHING";

    /// <summary>
    /// Session mode, run by the session that holds the advisory lock: $1 name, $2 holder. Returns the new epoch and the
    /// seconds since the previous leader resigned (null when it did not resign cleanly).
    /// </summary>
    public const string IncrementEpoch = """
        WITH locked AS (SELECT name, released_at FROM rowlock_leader_epochs WHERE name = $1 FOR UPDATE)
        UPDATE rowlock_leader_epochs e
           SET epoch = e.epoch + 1, holder = $2, acquired_at = now(), released_at = NULL, lease_expires_at = NULL
          FROM locked WHERE e.name = locked.name
        RETURNING e.epoch, extract(epoch FROM now() - locked.released_at)::float8
        """;

    /// <summary>
    /// Lease mode: takes the lease if it is free or expired. $1 name, $2 holder, $3 lease milliseconds. No row when the
    /// lease is held. Otherwise the new epoch and the seconds since the previous lease ended (released or expired).
    /// </summary>
    public const string TakeLease = """
        WITH locked AS (
            SELECT name, coalesce(released_at, lease_expires_at) AS ended_at FROM rowlock_leader_epochs
             WHERE name = $1 AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())
               FOR UPDATE)
        UPDATE rowlock_leader_epochs e
           SET epoch = e.epoch + 1, holder = $2, acquired_at = now(), released_at = NULL,
               lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond'
          FROM locked WHERE e.name = locked.name
        RETURNING e.epoch, extract(epoch FROM now() - locked.ended_at)::float8
        """;

    /// <summary>Lease mode: $1 name, $2 epoch, $3 lease milliseconds. One row when renewed, none when the lease is gone.</summary>
    public const string RenewLease = """
        UPDATE rowlock_leader_epochs SET lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond'
         WHERE name = $1 AND epoch = $2 AND lease_expires_at > clock_timestamp()
        RETURNING 1
        """;

    /// <summary>Lease mode: $1 name, $2 epoch. Ends the lease now.</summary>
    public const string ReleaseLease = """
        UPDATE rowlock_leader_epochs SET lease_expires_at = NULL, released_at = now()
         WHERE name = $1 AND epoch = $2 AND lease_expires_at > clock_timestamp()
        """;

    /// <summary>Session mode: $1 name, $2 epoch. Marks a clean resignation (for the next leader's takeover time).</summary>
    public const string MarkReleased = "UPDATE rowlock_leader_epochs SET released_at = now() WHERE name = $1 AND epoch = $2";

    /// <summary>$1 name: wakes anyone listening (outside any business transaction).</summary>
    public const string Notify = "SELECT pg_notify('rowlock_leader', $1)";

    /// <summary>$1 name: the fence. The row stays KEY SHARE locked until the caller's transaction ends.</summary>
    public const string Fence = "SELECT epoch FROM rowlock_leader_epochs WHERE name = $1 FOR KEY SHARE";

    /// <summary>$1 classid, $2 objid (pg_locks coordinates of the key): whether this session holds the advisory lock.</summary>
    public const string HoldsLock = """
        SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                          AND mode = 'ExclusiveLock' AND objsubid = 1 AND classid = $1::oid AND objid = $2::oid)
        """;

    /// <summary>$1 name, $2 classid, $3 objid: who leads now (health check); session mode asks pg_locks whether any session holds the lock.</summary>
    public const string SessionStatus = """
        SELECT e.epoch, e.holder,
               EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock'
                          AND l.objsubid = 1 AND l.classid = $2::oid AND l.objid = $3::oid)
          FROM rowlock_leader_epochs e WHERE e.name = $1
        """;

    /// <summary>$1 name: who leads now in lease mode.</summary>
    public const string LeaseStatus = """
        SELECT epoch, holder, coalesce(lease_expires_at > clock_timestamp(), false) FROM rowlock_leader_epochs WHERE name = $1
        """;

    /// <summary>The application_name the election's connections carry, at most 63 bytes (PostgreSQL truncates longer ones).</summary>
    public static string ApplicationName(string name)
    {
        var full = "rowlock-leader:" + name;
        if (System.Text.Encoding.UTF8.GetByteCount(full) <= 63)
        {
            return full;
        }

        var builder = new System.Text.StringBuilder();
        foreach (var rune in full.EnumerateRunes())
        {
            if (System.Text.Encoding.UTF8.GetByteCount(builder.ToString() + rune.ToString()) > 63)
            {
                break;
            }

            builder.Append(rune.ToString());
        }

        return builder.ToString();
    }

    public static string Milliseconds(TimeSpan value) => ((long)Math.Ceiling(value.TotalMilliseconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
