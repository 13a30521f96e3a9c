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
    public const int Capacity = BoundedCache<string, bool>.Capacity;

    private static readonly BoundedCache<string, bool> Cache = new(StringComparer.Ordinal);

    /// <summary>How many entries the cache holds now (tests check the bound).</summary>
    public static int Count => Cache.Count;

    /// <summary>Throws as <see cref="SqlText.ValidateWrite"/> does, unless the same text passed before.</summary>
    public static void Validate(string sql, string paramName)
    {
        ArgumentNullException.ThrowIfNull(sql, paramName);
        if (Cache.TryGetValue(sql, out _))
        {
            return;
        }

        SqlText.ValidateWrite(sql, paramName);
        Cache.Add(sql, true);
    }
}
