using System.Collections.Concurrent;

namespace RowLock.Internal;

/// <summary>
/// The final writes (<c>DeferUntilCommit</c>, <c>ExecuteAndCommitAsync</c>) whose SQL passed <see cref="SqlText.ValidateWrite"/>,
/// so that the same statement deferred again is not lexed again. Validation is a pure function of the text; only
/// successes are kept, so refused SQL is checked (and refused) on every call. Bounded as <see cref="ValidatedSelects"/> is:
/// past <see cref="Capacity"/> entries the cache starts over. What depends on the session
/// (<see cref="SqlText.ValidateForSession"/>) is not cached.
/// </summary>
internal static class ValidatedWrites
{
    public const int Capacity = 1024;

    private static readonly ConcurrentDictionary<string, bool> Cache = new(StringComparer.Ordinal);
    private static int _count;

    /// <summary>How many entries the cache holds now (tests check the bound).</summary>
    public static int Count => Cache.Count;

    /// <summary>Throws as <see cref="SqlText.ValidateWrite"/> does, unless the same text passed before.</summary>
    public static void Validate(string sql, string paramName)
    {
        ArgumentNullException.ThrowIfNull(sql, paramName);
        if (Cache.ContainsKey(sql))
        {
            return;
        }

        SqlText.ValidateWrite(sql, paramName);
        if (Cache.TryAdd(sql, true) && Interlocked.Increment(ref _count) > Capacity)
        {
            // Start over rather than track recency: a working set that fits stays warm, a flood of one-off SQL does not grow it.
            Cache.Clear();
            Interlocked.Exchange(ref _count, 0);
        }
    }
}
