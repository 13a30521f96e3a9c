using System.Globalization;
using Npgsql;

namespace RowLock.Diagnostics.LockWaits;

/// <summary>Reads <see cref="LockWaitSql"/>'s rows into sessions and links them.</summary>
internal static class LockWaitReader
{
    /// <summary>What PostgreSQL puts in pg_stat_activity.query for a session the role may not see.</summary>
    private const string InsufficientPrivilege = "<insufficient privilege>";

    public static async Task<LockWaitSnapshot> ReadAsync(NpgsqlDataReader reader, AdvisoryKeyNames? names, CancellationToken cancellationToken)
    {
        DateTimeOffset takenAt = default;
        var database = "";
        long? deadlocks = null;
        var sessions = new List<LockSession>();
        var longest = new List<LockSession>();
        var prepared = new List<(LockSession Session, int[] Blocks)>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            takenAt = new DateTimeOffset(reader.GetFieldValue<DateTime>(reader.GetOrdinal("taken_at")).ToUniversalTime(), TimeSpan.Zero);
            database = reader.GetString(reader.GetOrdinal("database"));
            deadlocks = Get<long?>(reader, "deadlocks");
            var kind = Get<string>(reader, "kind");
            if (kind == "prepared")
            {
                var transaction = new LockSession(-(prepared.Count + 1))
                {
                    IsPreparedTransaction = true,
                    PreparedTransactionId = Get<string>(reader, "gid"),
                    UserName = Get<string>(reader, "usename"),
                    Database = Get<string>(reader, "datname"),
                    TransactionAge = Get<TimeSpan?>(reader, "xact_age"),
                    State = "prepared",
                };
                prepared.Add((transaction, Get<int[]>(reader, "blocks") ?? []));
                continue;
            }

            if (Get<int?>(reader, "pid") is not { } pid)
            {
                continue; // no session of interest: only the header row
            }

            var query = Get<string>(reader, "query");
            var hidden = query == InsufficientPrivilege;
            var session = new LockSession(pid)
            {
                Database = Get<string>(reader, "datname"),
                UserName = Get<string>(reader, "usename"),
                ApplicationName = Get<string>(reader, "application_name"),
                BackendType = Get<string>(reader, "backend_type"),
                ParallelLeaderPid = Get<int?>(reader, "leader_pid") is { } leader && leader != pid ? leader : null,
                ParallelWorkers = Get<int?>(reader, "workers") ?? 0,
                Client = Get<string>(reader, "client"),
                State = Get<string>(reader, "state"),
                IsDetailHidden = hidden,
                Query = hidden ? null : query,
                TransactionAge = Get<TimeSpan?>(reader, "xact_age"),
                StateDuration = hidden ? null : Get<TimeSpan?>(reader, "state_age"),
                WaitDuration = Get<TimeSpan?>(reader, "wait_age"),
                BlockedBy = (Get<int[]>(reader, "blocked_by") ?? []).Distinct().Order().ToArray(),
                WaitingFor = ReadTarget(reader, names),
            };
            sessions.Add(session);
            if (reader.GetBoolean(reader.GetOrdinal("long_xact")))
            {
                longest.Add(session);
            }
        }

        foreach (var session in sessions.Concat(prepared.Select(p => p.Session)))
        {
            session.IsInOtherDatabase = session.Database is not null && session.Database != database;
        }

        ResolvePreparedBlockers(sessions, prepared);
        AddMissingBlockers(sessions);
        var (roots, linked) = LockWaitGraph.Link(sessions);
        var longestFirst = longest.OrderByDescending(s => s.TransactionAge ?? TimeSpan.Zero).ThenBy(s => s.Pid).ToArray();
        return new LockWaitSnapshot(takenAt, database, deadlocks, linked, roots, longestFirst);
    }

    /// <summary>
    /// pg_blocking_pids reports a prepared transaction as pid 0. Each 0 becomes the prepared transactions holding the lock
    /// the waiter wants (matched by the query), or, when none matched (it ended meanwhile), one unnamed prepared transaction.
    /// </summary>
    private static void ResolvePreparedBlockers(List<LockSession> sessions, List<(LockSession Session, int[] Blocks)> prepared)
    {
        LockSession? unnamed = null;
        foreach (var waiter in sessions.Where(s => s.BlockedBy.Contains(0)))
        {
            var holders = prepared.Where(p => p.Blocks.Contains(waiter.Pid)).Select(p => p.Session.Pid).ToList();
            if (holders.Count == 0)
            {
                unnamed ??= new LockSession(-(prepared.Count + 1)) { IsPreparedTransaction = true, State = "prepared" };
                holders.Add(unnamed.Pid);
            }

            waiter.BlockedBy = waiter.BlockedBy.Where(p => p != 0).Concat(holders).Distinct().Order().ToArray();
        }

        sessions.AddRange(prepared.Where(p => p.Blocks.Length > 0).Select(p => p.Session));
        if (unnamed is not null)
        {
            sessions.Add(unnamed);
        }

        sessions.Sort((x, y) => x.Pid.CompareTo(y.Pid));
    }

    /// <summary>A blocker that ended between the views being read still stands in the graph, by its pid: a waiter is never promoted in its place.</summary>
    private static void AddMissingBlockers(List<LockSession> sessions)
    {
        var known = sessions.Select(s => s.Pid).ToHashSet();
        var missing = sessions.SelectMany(s => s.BlockedBy).Where(p => !known.Contains(p)).Distinct().Order().ToArray();
        if (missing.Length == 0)
        {
            return;
        }

        sessions.AddRange(missing.Select(p => new LockSession(p) { IsKnown = false }));
        sessions.Sort((x, y) => x.Pid.CompareTo(y.Pid));
    }

    private static LockWaitTarget? ReadTarget(NpgsqlDataReader reader, AdvisoryKeyNames? names)
    {
        if (Get<string>(reader, "locktype") is not { } lockType)
        {
            return null;
        }

        var mode = Get<string>(reader, "mode") ?? "";
        var relation = Get<string>(reader, "relation");
        var relationId = Get<long?>(reader, "relid") is { } oid ? (uint)oid : (uint?)null;
        var lockDatabase = Get<string>(reader, "lock_datname");
        var elsewhere = Get<bool?>(reader, "lock_elsewhere") ?? false;
        var databaseId = Get<long?>(reader, "lock_dbid");
        var page = Get<int?>(reader, "page");
        var tuple = Get<short?>(reader, "tuple");
        var xid = Get<string>(reader, "xid");
        var classId = Get<long?>(reader, "classid");
        var objId = Get<long?>(reader, "objid");
        var objSubId = Get<short?>(reader, "objsubid");
        AdvisoryLockKey? key = null;
        string? name = null;
        var kind = lockType switch
        {
            "tuple" => LockWaitTargetKind.Row,
            "transactionid" => page is not null && tuple is not null ? LockWaitTargetKind.Row : LockWaitTargetKind.TransactionId,
            "advisory" => LockWaitTargetKind.Advisory,
            "relation" => LockWaitTargetKind.Relation,
            _ => LockWaitTargetKind.Other,
        };
        if (kind == LockWaitTargetKind.Advisory)
        {
            var high = (uint)classId.GetValueOrDefault();
            var low = (uint)objId.GetValueOrDefault();
            var k = objSubId == 2
                ? AdvisoryLockKey.FromInt32Pair((int)high, (int)low)
                : AdvisoryLockKey.FromInt64((long)(((ulong)high << 32) | low));
            key = k;
            if (names is not null && names.TryGetName(k, out var registered))
            {
                name = registered;
            }
        }

        // One row is one object whether it is waited for through its tuple lock or its holder's transaction id.
        var identity = kind == LockWaitTargetKind.Row
            ? string.Create(CultureInfo.InvariantCulture, $"row/{databaseId}/{relationId}/{page}/{tuple}")
            : string.Create(CultureInfo.InvariantCulture, $"{lockType}/{databaseId}/{relationId}/{page}/{tuple}/{Get<string>(reader, "virtualxid")}/{xid}/{classId}/{objId}/{objSubId}");
        return new LockWaitTarget(kind, lockType, mode, relation, page, tuple, xid, key, name, relationId, lockDatabase, elsewhere, identity);
    }

    private static T? Get<T>(NpgsqlDataReader reader, string column)
    {
        var ordinal = reader.GetOrdinal(column);
        return reader.IsDBNull(ordinal) ? default : reader.GetFieldValue<T>(ordinal);
    }
}
