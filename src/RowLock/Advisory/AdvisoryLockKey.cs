using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace RowLock;

/// <summary>
/// The key of a PostgreSQL advisory lock, in one of PostgreSQL's two key spaces: a 64-bit integer
/// (<see cref="FromName"/>, <see cref="FromInt64"/>) or a pair of 32-bit integers (<see cref="FromInt32Pair"/>).
/// The two spaces never collide. Keys are equal when they lock the same thing; the name is kept only for display.
/// </summary>
public readonly record struct AdvisoryLockKey
{
    /// <summary>UTF-8 that throws on a lone surrogate instead of writing U+FFFD.</summary>
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly long _value;
    private readonly string? _name;

    private AdvisoryLockKey(long value, bool isInt32Pair, string? name)
    {
        _value = value;
        IsInt32Pair = isInt32Pair;
        _name = name;
    }

    /// <summary>
    /// The key for a name: the first 8 bytes of SHA-256 of the name's UTF-8 bytes, read big-endian as a signed 64-bit
    /// integer. The same as Python's <c>int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)</c>
    /// and PostgreSQL's <c>('x' || encode(substring(sha256(convert_to(name, 'UTF8')) from 1 for 8), 'hex'))::bit(64)::bigint</c>,
    /// so services in other languages can share the lock.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty, or is not valid UTF-16 (it has a lone surrogate,
    /// which has no UTF-8 encoding, so no other language could compute the same key).</exception>
    public static AdvisoryLockKey FromName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        byte[] utf8;
        try
        {
            utf8 = StrictUtf8.GetBytes(name);
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException(
                "The name has a lone surrogate (half of a UTF-16 pair), which has no UTF-8 encoding: the key would not match the one other languages compute.",
                nameof(name), e);
        }

        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(utf8, hash);
        return new AdvisoryLockKey(BinaryPrimitives.ReadInt64BigEndian(hash), isInt32Pair: false, name);
    }

    /// <summary>A key in the 64-bit space, as <c>pg_advisory_lock(bigint)</c> takes it.</summary>
    public static AdvisoryLockKey FromInt64(long key) => new(key, isInt32Pair: false, null);

    /// <summary>A key in the two-int space, as <c>pg_advisory_lock(int, int)</c> takes it. Never equal to a 64-bit key.</summary>
    public static AdvisoryLockKey FromInt32Pair(int key1, int key2) => new(((long)key1 << 32) | (uint)key2, isInt32Pair: true, null);

    /// <summary>True for a key made by <see cref="FromInt32Pair"/>.</summary>
    public bool IsInt32Pair { get; }

    /// <summary>The 64-bit key (for keys made by <see cref="FromName"/> or <see cref="FromInt64"/>).</summary>
    /// <exception cref="InvalidOperationException">The key is an int pair; use <see cref="Key1"/> and <see cref="Key2"/>.</exception>
    public long Value => IsInt32Pair
        ? throw new InvalidOperationException("This key is in PostgreSQL's two-int key space; use Key1 and Key2.")
        : _value;

    /// <summary>The first int of a pair key.</summary>
    /// <exception cref="InvalidOperationException">The key is a 64-bit key; use <see cref="Value"/>.</exception>
    public int Key1 => IsInt32Pair ? (int)(_value >> 32) : throw new InvalidOperationException("This key is in PostgreSQL's 64-bit key space; use Value.");

    /// <summary>The second int of a pair key.</summary>
    /// <exception cref="InvalidOperationException">The key is a 64-bit key; use <see cref="Value"/>.</exception>
    public int Key2 => IsInt32Pair ? (int)_value : throw new InvalidOperationException("This key is in PostgreSQL's 64-bit key space; use Value.");

    /// <summary>The name the key was made from, or null.</summary>
    public string? Name => _name;

    /// <summary>
    /// Where the lock shows up in <c>pg_locks</c> (<c>locktype = 'advisory'</c>): a 64-bit key is split into
    /// classid (high 32 bits) and objid (low 32 bits) with objsubid 1; a pair is classid = key1, objid = key2, objsubid 2.
    /// </summary>
    public (uint ClassId, uint ObjId, int ObjSubId) PgLocksCoordinates => ((uint)(_value >> 32), (uint)_value, IsInt32Pair ? 2 : 1);

    /// <summary>
    /// A SQL predicate an operator can paste into a query on <c>pg_locks</c> to find this lock in the database they are
    /// connected to (<c>pg_locks</c> lists every database's locks, and each database has its own advisory locks).
    /// </summary>
    public string PgLocksPredicate
    {
        get
        {
            var (classId, objId, objSubId) = PgLocksCoordinates;
            return string.Create(CultureInfo.InvariantCulture, $"locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = {classId} AND objid = {objId} AND objsubid = {objSubId}");
        }
    }

    /// <summary>Keys are equal when they lock the same thing: same key space, same value. The name does not count.</summary>
    public bool Equals(AdvisoryLockKey other) => _value == other._value && IsInt32Pair == other.IsInt32Pair;

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(_value, IsInt32Pair);

    /// <summary>E.g. <c>"jobs.sync" (3827055375235039567)</c>, <c>42</c> or <c>(1, 2)</c>.</summary>
    public override string ToString() => IsInt32Pair
        ? string.Create(CultureInfo.InvariantCulture, $"({Key1}, {Key2})")
        : _name is null
            ? _value.ToString(CultureInfo.InvariantCulture)
            : string.Create(CultureInfo.InvariantCulture, $"\"{_name}\" ({_value})");
}
