using System.Globalization;

namespace RowLock.Diagnostics.LockWaits;

/// <summary>The one query behind a lock-wait snapshot.</summary>
internal static class LockWaitSql
{
    /// <summary>
    /// One row per session of interest, left-joined to a one-row header so an empty graph still returns the time, the
    /// database and the deadlocks counter. Parameters: <c>$1</c> all databases, <c>$2</c> query length, <c>$3</c> how many long transactions.
    /// </summary>
    /// <remarks>
    /// A backend waits for at most one lock, so <c>w</c> has one row per waiting pid. A session that waits on a
    /// transaction id while holding a tuple lock is the first in line for a row: the tuple lock names the row.
    /// pg_blocking_pids takes the lock manager's partition locks, so it is called only for sessions that wait.
    /// pg_locks is visible to every role, pg_stat_activity only partly: the graph is complete for everyone.
    /// </remarks>
    public static string Build(int serverMajorVersion)
    {
        // pg_locks.waitstart arrived in PostgreSQL 14; before it, a Lock wait began at most at state_change.
        var waitStart = serverMajorVersion >= 14 ? "l.waitstart" : "NULL::timestamptz";
        return string.Create(CultureInfo.InvariantCulture, $"""
            WITH db AS (
                SELECT oid FROM pg_database WHERE datname = current_database()
            ), w AS (
                SELECT DISTINCT ON (l.pid) l.pid, l.locktype, l.mode, l.database, l.relation, l.page, l.tuple,
                       l.transactionid::text AS xid, l.classid::bigint AS classid, l.objid::bigint AS objid, l.objsubid,
                       {waitStart} AS waitstart
                FROM pg_locks l
                WHERE NOT l.granted AND l.pid IS NOT NULL
                ORDER BY l.pid
            ), t AS (
                SELECT DISTINCT ON (l.pid) l.pid, l.database, l.relation, l.page, l.tuple
                FROM pg_locks l
                WHERE l.granted AND l.locktype = 'tuple' AND l.pid IS NOT NULL
                ORDER BY l.pid
            ), a AS (
                SELECT s.*, CASE WHEN w.pid IS NULL THEN ARRAY[]::int[] ELSE pg_blocking_pids(s.pid) END AS blocked_by
                FROM pg_stat_activity s
                LEFT JOIN w ON w.pid = s.pid
                WHERE s.pid <> pg_backend_pid() AND ($1 OR s.datid = (SELECT oid FROM db))
            ), b AS (
                SELECT DISTINCT unnest(blocked_by) AS pid FROM a
            ), x AS (
                SELECT pid FROM a WHERE xact_start IS NOT NULL ORDER BY xact_start, pid LIMIT $3
            ), q AS (
                SELECT a.pid, a.usename::text AS usename, a.application_name, a.state, a.backend_type,
                       CASE WHEN a.client_addr IS NULL THEN CASE WHEN a.client_port = -1 THEN 'local' END
                            ELSE host(a.client_addr) || ':' || a.client_port END AS client,
                       left(a.query, $2) AS query, a.blocked_by,
                       statement_timestamp() - a.xact_start AS xact_age,
                       statement_timestamp() - coalesce(w.waitstart, CASE WHEN a.wait_event_type = 'Lock' THEN a.state_change END) AS wait_age,
                       w.locktype, w.mode, w.xid, w.classid, w.objid, w.objsubid,
                       coalesce(w.page, t.page) AS page, coalesce(w.tuple, t.tuple) AS tuple,
                       CASE WHEN coalesce(w.database, t.database) = (SELECT oid FROM db)
                            THEN coalesce(w.relation, t.relation)::regclass::text END AS relation,
                       a.pid IN (SELECT pid FROM x) AS long_xact
                FROM a
                LEFT JOIN w ON w.pid = a.pid
                LEFT JOIN t ON t.pid = a.pid AND w.locktype = 'transactionid'
                WHERE w.pid IS NOT NULL OR a.pid IN (SELECT pid FROM b) OR a.pid IN (SELECT pid FROM x)
            )
            SELECT h.taken_at, h.database, h.deadlocks, q.*
            FROM (SELECT statement_timestamp() AS taken_at, current_database()::text AS database,
                         (SELECT d.deadlocks FROM pg_stat_database d WHERE d.datid = (SELECT oid FROM db)) AS deadlocks) h
            LEFT JOIN q ON true
            ORDER BY q.pid
            """);
    }
}
