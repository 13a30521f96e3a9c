using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;

namespace RowLock.Internal;

/// <summary>
/// A process-wide cache of verdicts that are pure functions of their key (validated SQL, server shape checks), bounded
/// without tracking recency: past <see cref="Capacity"/> additions it starts over, so a working set that fits stays warm
/// and a flood of one-off keys (SQL built with inline values) cannot grow it without limit. Thread-safe.
/// </summary>
internal sealed class BoundedCache<TKey, TValue>(IEqualityComparer<TKey>? comparer = null)
    where TKey : notnull
{
    public const int Capacity = 1024;

    private readonly ConcurrentDictionary<TKey, TValue> _entries = new(comparer);
    private int _count;

    /// <summary>How many entries the cache holds now (tests check the bound).</summary>
    public int Count => _entries.Count;

    public bool TryGetValue(TKey key, [MaybeNullWhen(false)] out TValue value) => _entries.TryGetValue(key, out value);

    /// <summary>Keeps <paramref name="value"/> for <paramref name="key"/> unless it is there already; starts over past the capacity.</summary>
    public void Add(TKey key, TValue value)
    {
        if (_entries.TryAdd(key, value) && Interlocked.Increment(ref _count) > Capacity)
        {
            _entries.Clear();
            Interlocked.Exchange(ref _count, 0);
        }
    }
}
