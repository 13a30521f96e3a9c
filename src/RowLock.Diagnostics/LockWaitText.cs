using System.Globalization;
using System.Text;

namespace RowLock;

/// <summary>The phrases the text tree, the Mermaid graph and the health check share, so they say the same thing.</summary>
internal static class LockWaitText
{
    private const int QueryDisplayLength = 80;

    /// <summary><c>pid 4711 (billing)</c>.</summary>
    public static string Who(LockSession session) =>
        string.IsNullOrEmpty(session.ApplicationName)
            ? string.Create(CultureInfo.InvariantCulture, $"pid {session.Pid}")
            : string.Create(CultureInfo.InvariantCulture, $"pid {session.Pid} ({session.ApplicationName})");

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

    /// <summary>What a session does: <c>waits 00:00:04 for row (0,1) of accounts [ShareLock]</c> or <c>idle in transaction, transaction open 00:00:05, holds up 4</c>.</summary>
    public static string Doing(LockSession session)
    {
        var parts = new List<string>();
        if (session.WaitingFor is { } target)
        {
            parts.Add("waits " + Duration(session.WaitDuration) + " for " + target);
        }
        else if (session.IsDetailHidden)
        {
            parts.Add("details hidden (needs pg_read_all_stats)");
        }
        else if (session.State is { } state)
        {
            parts.Add(state);
        }

        if (session.WaitingFor is null && session.TransactionAge is { } age)
        {
            parts.Add("transaction open " + Duration(age));
        }

        if (session.HoldsUp > 0 && session.IsRoot)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"holds up {session.HoldsUp}"));
        }

        return string.Join(", ", parts);
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

    private static string Plural(int count, string one, string many) => string.Create(CultureInfo.InvariantCulture, $"{count} {(count == 1 ? one : many)}");
}
