namespace RowLock.Internal;

/// <summary>
/// The one global order in which several advisory locks are taken: 64-bit keys by value, then two-int keys by
/// (key1, key2), all signed. Names do not count: two callers that name the same locks in any order take them in the
/// same key order, so they cannot deadlock on each other.
/// </summary>
internal static class AdvisoryLockKeyOrder
{
    public static int Compare(AdvisoryLockKey a, AdvisoryLockKey b)
    {
        if (a.IsInt32Pair != b.IsInt32Pair)
        {
            return a.IsInt32Pair ? 1 : -1;
        }

        if (!a.IsInt32Pair)
        {
            return a.Value.CompareTo(b.Value);
        }

        var first = a.Key1.CompareTo(b.Key1);
        return first != 0 ? first : a.Key2.CompareTo(b.Key2);
    }

    /// <summary>The distinct keys in ascending order; refuses null and empty before anything is sent.</summary>
    public static AdvisoryLockKey[] Sort(IEnumerable<AdvisoryLockKey> keys, string paramName)
    {
        ArgumentNullException.ThrowIfNull(keys, paramName);
        var distinct = new HashSet<AdvisoryLockKey>(keys).ToArray();
        if (distinct.Length == 0)
        {
            throw new ArgumentException("Give at least one key.", paramName);
        }

        Array.Sort(distinct, Compare);
        return distinct;
    }
}
