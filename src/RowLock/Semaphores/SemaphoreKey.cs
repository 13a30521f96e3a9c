using System.Globalization;

namespace RowLock;

/// <summary>
/// Names a counting semaphore made of advisory locks in PostgreSQL's two-int key space: slot <c>i</c> of a semaphore
/// with class id <c>c</c> is the lock <c>(c, i)</c>, for <c>i</c> in <c>0 .. maxCount - 1</c>, and its waiters queue on
/// the turnstile lock <c>(c, -1)</c>. No table is needed.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="FromName"/> derives the class id from the name: the first 4 bytes of SHA-256 of the name's UTF-8 bytes,
/// read big-endian as a signed 32-bit integer (the high half of <see cref="AdvisoryLockKey.FromName"/>'s key). Python:
/// <c>int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)</c>; PostgreSQL:
/// <c>('x' || encode(substring(sha256(convert_to(name, 'UTF8')) from 1 for 4), 'hex'))::bit(32)::int</c>.
/// </para>
/// <para>
/// Slot keys never equal a 64-bit key (<see cref="AdvisoryLockKey.FromName"/>, <see cref="AdvisoryLockKey.FromInt64"/>):
/// PostgreSQL tags two-int locks with objsubid 2 and 64-bit locks with objsubid 1. Two semaphore names can share a
/// class id (a 32-bit hash; among m names the chance is at most m(m-1)/2^33), and then they share slots: neither ever
/// exceeds its own count, but they take slots from each other. Use <see cref="FromClassId"/> to assign class ids by hand.
/// </para>
/// </remarks>
public readonly record struct SemaphoreKey
{
    /// <summary>The second key of the turnstile lock <c>(classId, -1)</c> that waiters queue on.</summary>
    internal const int TurnstileSlot = -1;

    /// <summary>The largest count a semaphore may have.</summary>
    public const int MaxCount = 10_000;

    private readonly string? _name;

    private SemaphoreKey(int classId, string? name)
    {
        ClassId = classId;
        _name = name;
    }

    /// <summary>The semaphore for a name: its class id is the first 4 bytes of SHA-256 of the name's UTF-8 bytes, big-endian, signed.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty or is not valid UTF-16 (see <see cref="AdvisoryLockKey.FromName"/>).</exception>
    public static SemaphoreKey FromName(string name) => new((int)(AdvisoryLockKey.FromName(name).Value >> 32), name);

    /// <summary>
    /// The semaphore with an explicit class id: its slots are <c>(classId, 0 .. maxCount - 1)</c>. Use it to keep
    /// semaphores apart by construction, or to leave room for other users of the two-int key space.
    /// </summary>
    public static SemaphoreKey FromClassId(int classId) => new(classId, null);

    /// <summary>The first int of every slot key (and of the turnstile key).</summary>
    public int ClassId { get; }

    /// <summary>The name the key was made from, or null.</summary>
    public string? Name => _name;

    /// <summary>The advisory lock of slot <paramref name="slot"/>: <c>(ClassId, slot)</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="slot"/> is negative or not below <see cref="MaxCount"/>.</exception>
    public AdvisoryLockKey SlotKey(int slot)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(slot);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(slot, MaxCount);
        return AdvisoryLockKey.FromInt32Pair(ClassId, slot);
    }

    /// <summary>The advisory locks of all slots of a semaphore with <paramref name="maxCount"/> slots, in slot order.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxCount"/> is not between 1 and <see cref="MaxCount"/>.</exception>
    public IReadOnlyList<AdvisoryLockKey> SlotKeys(int maxCount)
    {
        ValidateMaxCount(maxCount);
        var keys = new AdvisoryLockKey[maxCount];
        for (var i = 0; i < maxCount; i++)
        {
            keys[i] = AdvisoryLockKey.FromInt32Pair(ClassId, i);
        }

        return keys;
    }

    /// <summary>The turnstile lock <c>(ClassId, -1)</c>: waiters queue for it in PostgreSQL's lock queue, first come first served.</summary>
    public AdvisoryLockKey TurnstileKey => AdvisoryLockKey.FromInt32Pair(ClassId, TurnstileSlot);

    /// <summary>The LISTEN/NOTIFY channel on which a release wakes the waiter at the head of the queue.</summary>
    public string NotifyChannel => string.Create(CultureInfo.InvariantCulture, $"rowlock_semaphore_{(uint)ClassId}");

    /// <summary>Keys are equal when their class ids are; the name does not count.</summary>
    public bool Equals(SemaphoreKey other) => ClassId == other.ClassId;

    /// <inheritdoc/>
    public override int GetHashCode() => ClassId;

    /// <summary>E.g. <c>semaphore "exports" (class id 123)</c> or <c>semaphore (class id 123)</c>.</summary>
    public override string ToString() => _name is null
        ? string.Create(CultureInfo.InvariantCulture, $"semaphore (class id {ClassId})")
        : string.Create(CultureInfo.InvariantCulture, $"semaphore \"{_name}\" (class id {ClassId})");

    internal static void ValidateMaxCount(int maxCount, string paramName = "maxCount")
    {
        if (maxCount is < 1 or > MaxCount)
        {
            throw new ArgumentOutOfRangeException(paramName, maxCount,
                string.Create(CultureInfo.InvariantCulture, $"A semaphore's count must be between 1 and {MaxCount}."));
        }
    }
}
