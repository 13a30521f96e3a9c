using System.Globalization;
using System.Text;

namespace RowLock;

/// <summary>The phrases the text tree, the Mermaid graph and the health check share, so they say the same thing.</summary>
internal static class LockWaitText
{
    private const int QueryDisplayLength = 80;

    /// <summary>
    /// <c>pid 4711 (billing)</c>; <c>prepared transaction 'tx-42'</c>; <c>pid 4711 (billing) in database shop</c> for a
    /// session of another database; <c>pid 4712 (parallel worker of pid 4711)</c>; <c>pid 90 [autovacuum worker]</c>.
    /// </summary>
    public static string Who(LockSession session)
    {
        if (session.IsPreparedTransaction)
        {
            var gid = session.PreparedTransactionId is { } id ? "'" + id.Replace("'", "''", StringComparison.Ordinal) + "'" : "(ended)";
            return "prepared transaction " + gid + (session.IsInOtherDatabase ? " in database " + session.Database : "");
        }

        var who = string.Create(CultureInfo.InvariantCulture, $"pid {session.Pid}");
        if (!string.IsNullOrEmpty(session.ApplicationName))
        {
            who += " (" + session.ApplicationName + ")";
        }

        if (session.ParallelLeaderPid is { } leader)
        {
            who += string.Create(CultureInfo.InvariantCulture, $" (parallel worker of pid {leader})");
        }
        else if (session.BackendType is { } type && type != "client backend")
        {
            who += " [" + type + "]";
        }

        return session.IsInOtherDatabase ? who + " in database " + session.Database : who;
    }

    /// <summary>Whole seconds, <c>hh:mm:ss</c> (hours keep counting past a day).</summary>
    public static string Duration(TimeSpan? duration)
    {
        if (duration is not { } d)
        {
            return "?";
        }

        if (d < TimeSpan.Zero)
        {
            d = TimeSpan.Zero;
        }

        return string.Create(CultureInfo.InvariantCulture, $"{(long)d.TotalHours:00}:{d.Minutes:00}:{d.Seconds:00}");
    }

    /// <summary>
    /// What a session does: <c>waits 00:00:04 for row (0,1) of public.accounts [ShareLock]</c>, <c>idle in transaction for 00:03:10,
    /// transaction open 00:03:12, holds up 4</c>, <c>prepared 00:01:00 ago by ops, holds up 1; end it with COMMIT PREPARED or ROLLBACK PREPARED</c>.
    /// </summary>
    public static string Doing(LockSession session)
    {
        var parts = new List<string>();
        if (session.IsPreparedTransaction)
        {
            parts.Add("prepared " + Duration(session.TransactionAge) + " ago" + (session.UserName is { } owner ? " by " + owner : ""));
        }
        else if (!session.IsKnown)
        {
            parts.Add("no longer in pg_stat_activity (it ended while the snapshot was read)");
        }
        else if (session.WaitingFor is { } target)
        {
            parts.Add("waits " + Duration(session.WaitDuration) + " for " + target);
        }
        else if (session.IsDetailHidden)
        {
            parts.Add("details hidden (needs pg_read_all_stats)");
        }
        else if (session.State is { } state)
        {
            parts.Add(session.IsIdleInTransaction && session.StateDuration is { } idle ? state + " for " + Duration(idle) : state);
        }

        if (!session.IsPreparedTransaction && session.WaitingFor is null && session.TransactionAge is { } age)
        {
            parts.Add("transaction open " + Duration(age));
        }

        if (session.ParallelWorkers > 0)
        {
            parts.Add(Plural(session.ParallelWorkers, "parallel worker", "parallel workers"));
        }

        if (session.IsInDeadlockCycle)
        {
            parts.Add("in a lock cycle: a deadlock the server has not detected yet");
        }

        if (session.HoldsUp > 0 && session.IsRoot)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"holds up {session.HoldsUp}"));
        }

        var text = string.Join(", ", parts);
        return session.IsPreparedTransaction ? text + "; end it with COMMIT PREPARED or ROLLBACK PREPARED" : text;
    }

    /// <summary>What follows a session's description: <c>: the query</c>, or <c>; last statement: ...</c> for an idle session.</summary>
    public static string QuerySuffix(LockSession session)
    {
        if (Query(session) is not { } query)
        {
            return "";
        }

        return session.State is { } state && state.StartsWith("idle", StringComparison.Ordinal) ? "; last statement: " + query : ": " + query;
    }

    /// <summary>The query on one line, cut for display; null when unknown.</summary>
    public static string? Query(LockSession session)
    {
        if (string.IsNullOrWhiteSpace(session.Query))
        {
            return null;
        }

        var oneLine = new StringBuilder(session.Query.Length);
        var space = false;
        foreach (var c in session.Query.Trim())
        {
            if (char.IsWhiteSpace(c))
            {
                space = true;
                continue;
            }

            if (space)
            {
                oneLine.Append(' ');
                space = false;
            }

            oneLine.Append(c);
        }

        return oneLine.Length <= QueryDisplayLength ? oneLine.ToString() : oneLine.ToString(0, QueryDisplayLength - 1) + "…";
    }

    /// <summary>The summary line above the tree.</summary>
    public static string Headline(LockWaitSnapshot snapshot) => snapshot.Waiting.Count == 0
        ? snapshot.Database + ": no session waits on a lock"
        : string.Create(CultureInfo.InvariantCulture, $"{snapshot.Database}: {Plural(snapshot.Waiting.Count, "session waits", "sessions wait")} behind {Plural(snapshot.Roots.Count, "root blocker", "root blockers")}");

    public static string Plural(int count, string one, string many) => string.Create(CultureInfo.InvariantCulture, $"{count} {(count == 1 ? one : many)}");
}
