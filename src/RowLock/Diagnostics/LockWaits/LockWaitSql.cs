using System.Globalization;

namespace RowLock.Diagnostics.LockWaits;

/// <summary>The one query behind a lock-wait snapshot.</summary>
internal static class LockWaitSql
{
    /// <summary>
    /// One row per session of interest (<c>kind = 'session'</c>) and one per prepared transaction that blocks a session
    /// (<c>kind = 'prepared'</c>), left-joined to a one-row header so an empty graph still returns the time, the database
    /// and the deadlocks counter. Parameters: <c>$1</c> all databases, <c>$2</c> query length, <c>$3</c> how many long transactions.
    /// </summary>
    /// <remarks>
    /// A backend waits for at most one lock, so <c>w</c> has one row per waiting pid. A session that waits on a
    /// transaction id while holding a tuple lock is the first in line for a row: the tuple lock names the row.
    /// pg_blocking_pids takes the lock manager's partition locks, so it is called only for sessions that wait; pg_locks is
    /// read twice (waiting locks and granted tuple locks) and a third time only when a prepared transaction blocks someone.
    /// A blocker is read whatever its database (a lock on a shared catalog crosses databases), and a prepared transaction,
    /// which pg_blocking_pids reports as pid 0, is matched to the waiter by the lock they share.
    /// pg_locks is visible to every role, pg_stat_activity only partly: the graph is complete for everyone.
    /// </remarks>
    public static string Build(int serverMajorVersion)
    {
        // pg_locks.waitstart arrived in PostgreSQL 14; before it, a Lock wait began at most at state_change.
        var waitStart = serverMajorVersion >= 14 ? "l.waitstart" : "NULL::timestamptz";
        // pg_stat_activity.leader_pid arrived in PostgreSQL 13.
        var leaderPid = serverMajorVersion >= 13 ? "s.leader_pid" : "NULL::int";
        return string.Create(CultureInfo.InvariantCulture, $"""
            WITH db AS (
                SELECT oid FROM pg_database WHERE datname = current_database()
            ), w AS (
                SELECT DISTINCT ON (l.pid) l.pid, l.locktype, l.mode, l.database, l.relation, l.page, l.tuple, l.virtualxid,
                       l.transactionid, l.classid, l.objid, l.objsubid, {waitStart} AS waitstart
                FROM pg_locks l
                WHERE NOT l.granted AND l.pid IS NOT NULL
                ORDER BY l.pid
            ), t AS (
                SELECT DISTINCT ON (l.pid) l.pid, l.database, l.relation, l.page, l.tuple
                FROM pg_locks l
                WHERE l.granted AND l.locktype = 'tuple' AND l.pid IS NOT NULL
                ORDER BY l.pid
            ), s AS (
                SELECT s.*, {leaderPid} AS leader, $1 OR s.datid = (SELECT oid FROM db) AS in_scope,
                       CASE WHEN w.pid IS NOT NULL AND ($1 OR s.datid = (SELECT oid FROM db)) THEN pg_blocking_pids(s.pid) ELSE ARRAY[]::int[] END AS blocked_by
                FROM pg_stat_activity s
                LEFT JOIN w ON w.pid = s.pid
                WHERE s.pid <> pg_backend_pid()
            ), scope AS (
                SELECT * FROM s WHERE in_scope
            ), b AS (
                SELECT DISTINCT unnest(blocked_by) AS pid FROM scope
            ), wk AS (
                SELECT leader, count(*)::int AS workers FROM s WHERE leader IS NOT NULL AND leader <> pid GROUP BY leader
            ), x AS (
                SELECT pid FROM scope WHERE xact_start IS NOT NULL AND backend_type IS DISTINCT FROM 'parallel worker'
                ORDER BY xact_start, pid LIMIT $3
            ), q AS (
                SELECT 'session' AS kind, a.pid, a.datname::text AS datname, a.usename::text AS usename, a.application_name,
                       a.state, a.backend_type, a.leader AS leader_pid,
                       coalesce(wk.workers, 0) AS workers,
                       CASE WHEN a.client_addr IS NULL THEN CASE WHEN a.client_port = -1 THEN 'local' END
                            ELSE host(a.client_addr) || ':' || a.client_port END AS client,
                       left(a.query, $2) AS query, a.blocked_by,
                       statement_timestamp() - a.xact_start AS xact_age,
                       statement_timestamp() - a.state_change AS state_age,
                       statement_timestamp() - coalesce(w.waitstart, CASE WHEN a.wait_event_type = 'Lock' THEN a.state_change END) AS wait_age,
                       w.locktype, w.mode, w.transactionid::text AS xid, w.classid::bigint AS classid, w.objid::bigint AS objid, w.objsubid,
                       w.virtualxid,
                       coalesce(w.page, t.page) AS page, coalesce(w.tuple, t.tuple) AS tuple,
                       coalesce(w.relation, t.relation)::bigint AS relid,
                       coalesce(w.database, t.database)::bigint AS lock_dbid,
                       (SELECT d.datname::text FROM pg_database d WHERE d.oid = coalesce(w.database, t.database)) AS lock_datname,
                       coalesce(w.database, t.database) IS DISTINCT FROM (SELECT oid FROM db) AND coalesce(w.database, t.database) <> 0 AS lock_elsewhere,
                       CASE WHEN coalesce(w.database, t.database) IN ((SELECT oid FROM db), 0) THEN
                            (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE c.oid = coalesce(w.relation, t.relation)) END AS relation,
                       a.pid IN (SELECT pid FROM x) AS long_xact,
                       NULL::text AS gid, NULL::int[] AS blocks
                FROM s a
                LEFT JOIN w ON w.pid = a.pid
                LEFT JOIN t ON t.pid = a.pid AND w.locktype = 'transactionid'
                LEFT JOIN wk ON wk.leader = a.pid
                WHERE (a.in_scope AND (w.pid IS NOT NULL OR a.pid IN (SELECT pid FROM x)))
                   OR a.pid IN (SELECT pid FROM b)
            ), p AS (
                -- A prepared transaction keeps its locks under its old virtual transaction id, with no pid.
                SELECT px.gid, px.transaction::text AS xid, px.owner::text AS owner, px.database::text AS datname,
                       statement_timestamp() - px.prepared AS age,
                       (SELECT array_agg(DISTINCT wl.pid ORDER BY wl.pid)
                        FROM w wl
                        JOIN pg_locks hl ON hl.pid IS NULL AND hl.granted AND hl.virtualtransaction = pv.virtualtransaction
                         AND hl.locktype = wl.locktype AND hl.database IS NOT DISTINCT FROM wl.database
                         AND hl.relation IS NOT DISTINCT FROM wl.relation AND hl.page IS NOT DISTINCT FROM wl.page
                         AND hl.tuple IS NOT DISTINCT FROM wl.tuple AND hl.virtualxid IS NOT DISTINCT FROM wl.virtualxid
                         AND hl.transactionid IS NOT DISTINCT FROM wl.transactionid AND hl.classid IS NOT DISTINCT FROM wl.classid
                         AND hl.objid IS NOT DISTINCT FROM wl.objid AND hl.objsubid IS NOT DISTINCT FROM wl.objsubid
                        WHERE wl.pid IN (SELECT pid FROM scope WHERE 0 = ANY(blocked_by))) AS blocks
                FROM pg_prepared_xacts px
                JOIN pg_locks pv ON pv.locktype = 'transactionid' AND pv.pid IS NULL AND pv.granted AND pv.transactionid = px.transaction
                WHERE EXISTS (SELECT 1 FROM scope WHERE 0 = ANY(blocked_by))
            ), r AS (
                SELECT * FROM q
                UNION ALL
                SELECT 'prepared', NULL, p.datname, p.owner, NULL, NULL, NULL, NULL, 0, NULL, NULL, ARRAY[]::int[], p.age, p.age, NULL,
                       NULL, NULL, p.xid, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, NULL, false, p.gid, p.blocks
                FROM p
            )
            SELECT h.taken_at, h.database, h.deadlocks, r.*
            FROM (SELECT statement_timestamp() AS taken_at, current_database()::text AS database,
                         (SELECT d.deadlocks FROM pg_stat_database d WHERE d.datid = (SELECT oid FROM db)) AS deadlocks) h
            LEFT JOIN r ON true
            ORDER BY r.kind DESC, r.pid, r.gid
            """);
    }
}
