using System.Collections.Concurrent;
using System.Globalization;

namespace RowLock;

/// <summary>
/// Advisory lock names you own, so that a lock-wait snapshot can show <c>"jobs.sync"</c> instead of the SHA-256 key
/// PostgreSQL stores. A key is a hash: it cannot be turned back into its name, so a name is known only if it is
/// registered here. Create one registry per application (typically a singleton next to your lock names), register
/// every name you lock with, and pass it to <see cref="LockDiagnostics.GetLockWaitSnapshotAsync(Npgsql.NpgsqlDataSource, LockWaitSnapshotOptions?, CancellationToken)"/>.
/// </summary>
/// <remarks>
/// An instance, not a static cache: two applications (or two tests) in one process never see each other's names, and
/// nothing grows behind your back. Thread-safe.
/// </remarks>
public sealed class AdvisoryKeyNames
{
    private readonly ConcurrentDictionary<AdvisoryLockKey, string> _names = new();
    private readonly ConcurrentDictionary<int, (string Name, int MaxCount)> _semaphores = new();

    /// <summary>An empty registry.</summary>
    public AdvisoryKeyNames()
    {
    }

    /// <summary>A registry holding the keys of <paramref name="names"/> (see <see cref="AdvisoryLockKey.FromName"/>).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="names"/> or one of its items is null.</exception>
    /// <exception cref="ArgumentException">One of the names is empty.</exception>
    public AdvisoryKeyNames(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        foreach (var name in names)
        {
            Add(name);
        }
    }

    /// <summary>How many keys have a name.</summary>
    public int Count => _names.Count;

    /// <summary>Registers <paramref name="name"/> and returns its key, <see cref="AdvisoryLockKey.FromName"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty.</exception>
    public AdvisoryLockKey Add(string name)
    {
        var key = AdvisoryLockKey.FromName(name);
        _names.TryAdd(key, name);
        return key;
    }

    /// <summary>Registers a key made by <see cref="AdvisoryLockKey.FromName"/> under the name it was made from.</summary>
    /// <exception cref="ArgumentException">The key has no name (it was made by <see cref="AdvisoryLockKey.FromInt64"/> or <see cref="AdvisoryLockKey.FromInt32Pair"/>; use <see cref="Add(AdvisoryLockKey, string)"/>).</exception>
    public AdvisoryLockKey Add(AdvisoryLockKey key)
    {
        if (key.Name is null)
        {
            throw new ArgumentException("The key was not made from a name; give it a label with Add(key, label).", nameof(key));
        }

        _names.TryAdd(key, key.Name);
        return key;
    }

    /// <summary>
    /// Gives a numeric key (e.g. <c>FromInt32Pair(7, 11)</c>, used by another library) a label to show in snapshots.
    /// The first label registered for a key wins.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="label"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="label"/> is empty.</exception>
    public AdvisoryLockKey Add(AdvisoryLockKey key, string label)
    {
        ArgumentException.ThrowIfNullOrEmpty(label);
        _names.TryAdd(key, label);
        return key;
    }

    /// <summary>
    /// Registers a semaphore (see <see cref="SemaphoreKey.FromName"/>) with its count, so that snapshots label its queue
    /// and slots by name and <see cref="LockDiagnostics.GetSemaphoresAsync"/> reports it (name, count, holders, waiters)
    /// as one thing instead of <paramref name="maxCount"/> anonymous two-int keys.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="name"/> is null or empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxCount"/> is out of range.</exception>
    public SemaphoreKey AddSemaphore(string name, int maxCount) => AddSemaphore(SemaphoreKey.FromName(name), name, maxCount);

    /// <summary>Registers a semaphore key (e.g. an explicit class id) under a label, with its count.</summary>
    /// <exception cref="ArgumentException"><paramref name="label"/> is null or empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxCount"/> is out of range.</exception>
    public SemaphoreKey AddSemaphore(SemaphoreKey semaphore, string label, int maxCount)
    {
        ArgumentException.ThrowIfNullOrEmpty(label);
        SemaphoreKey.ValidateMaxCount(maxCount);
        _semaphores.TryAdd(semaphore.ClassId, (label, maxCount));
        _names.TryAdd(semaphore.TurnstileKey, $"semaphore {label} (queue)");
        for (var slot = 0; slot < maxCount; slot++)
        {
            _names.TryAdd(semaphore.SlotKey(slot), string.Create(CultureInfo.InvariantCulture, $"semaphore {label} slot {slot}"));
        }

        return semaphore;
    }

    /// <summary>The semaphores registered with <see cref="AddSemaphore(string, int)"/>: class id, label, count.</summary>
    internal IEnumerable<(int ClassId, string Name, int MaxCount)> Semaphores => _semaphores.Select(s => (s.Key, s.Value.Name, s.Value.MaxCount));

    /// <summary>The name registered for <paramref name="key"/>, or false.</summary>
    public bool TryGetName(AdvisoryLockKey key, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? name) =>
        _names.TryGetValue(key, out name);

    /// <summary>
    /// The SQL expression that computes <paramref name="name"/>'s key inside PostgreSQL (11 or later), with the name as
    /// a quoted literal, ready to paste into psql: <c>('x' || encode(substring(sha256(convert_to('jobs.sync', 'UTF8')) from 1 for 8), 'hex'))::bit(64)::bigint</c>.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty or contains a NUL character.</exception>
    public static string SqlExpression(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException("A PostgreSQL text value cannot contain a NUL character.", nameof(name));
        }

        var literal = "'" + name.Replace("'", "''", StringComparison.Ordinal) + "'";
        if (name.Contains('\\', StringComparison.Ordinal))
        {
            // A plain literal keeps backslashes only with standard_conforming_strings on; an E'' literal with the
            // backslashes doubled means the same text whatever that setting is.
            literal = "E'" + name.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "''", StringComparison.Ordinal) + "'";
        }

        return string.Create(CultureInfo.InvariantCulture, $"('x' || encode(substring(sha256(convert_to({literal}, 'UTF8')) from 1 for 8), 'hex'))::bit(64)::bigint");
    }
}
