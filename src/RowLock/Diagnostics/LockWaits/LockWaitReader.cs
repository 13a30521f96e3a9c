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
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            takenAt = new DateTimeOffset(reader.GetFieldValue<DateTime>(reader.GetOrdinal("taken_at")).ToUniversalTime(), TimeSpan.Zero);
            database = reader.GetString(reader.GetOrdinal("database"));
            deadlocks = Get<long?>(reader, "deadlocks");
            if (Get<int?>(reader, "pid") is not { } pid)
            {
                continue; // no session of interest: only the header row
            }

            var query = Get<string>(reader, "query");
            var hidden = query == InsufficientPrivilege;
            var session = new LockSession(pid)
            {
                UserName = Get<string>(reader, "usename"),
                ApplicationName = Get<string>(reader, "application_name"),
                Client = Get<string>(reader, "client"),
                State = Get<string>(reader, "state"),
                IsDetailHidden = hidden,
                Query = hidden ? null : query,
                TransactionAge = Get<TimeSpan?>(reader, "xact_age"),
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

        var (roots, linked) = LockWaitGraph.Link(sessions);
        var longestFirst = longest.OrderByDescending(s => s.TransactionAge ?? TimeSpan.Zero).ThenBy(s => s.Pid).ToArray();
        return new LockWaitSnapshot(takenAt, database, deadlocks, linked, roots, longestFirst);
    }

    private static LockWaitTarget? ReadTarget(NpgsqlDataReader reader, AdvisoryKeyNames? names)
    {
        if (Get<string>(reader, "locktype") is not { } lockType)
        {
            return null;
        }

        var mode = Get<string>(reader, "mode") ?? "";
        var relation = Get<string>(reader, "relation");
        var page = Get<int?>(reader, "page");
        var tuple = Get<short?>(reader, "tuple");
        var xid = Get<string>(reader, "xid");
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
            var classId = (uint)Get<long?>(reader, "classid").GetValueOrDefault();
            var objId = (uint)Get<long?>(reader, "objid").GetValueOrDefault();
            var k = Get<short?>(reader, "objsubid") == 2
                ? AdvisoryLockKey.FromInt32Pair((int)classId, (int)objId)
                : AdvisoryLockKey.FromInt64((long)(((ulong)classId << 32) | objId));
            key = k;
            if (names is not null && names.TryGetName(k, out var registered))
            {
                name = registered;
            }
        }

        return new LockWaitTarget(kind, lockType, mode, relation, page, tuple, xid, key, name);
    }

    private static T? Get<T>(NpgsqlDataReader reader, string column)
    {
        var ordinal = reader.GetOrdinal(column);
        return reader.IsDBNull(ordinal) ? default : reader.GetFieldValue<T>(ordinal);
    }
}
