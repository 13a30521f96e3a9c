using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// A PostgreSQL locking clause: strength (<see cref="ForUpdate"/>, <see cref="ForNoKeyUpdate"/>,
/// <see cref="ForShare"/>, <see cref="ForKeyShare"/>), wait policy (<see cref="NoWait"/>, <see cref="SkipLocked"/>,
/// <see cref="WithTimeout"/>) and an optional <see cref="Of"/> table list. Immutable: every method returns a
/// new clause, and the last wait policy set wins.
/// </summary>
/// <example><code>var clause = RowLockClause.ForUpdate.Of("orders").NoWait(); // FOR UPDATE OF "orders" NOWAIT</code></example>
public readonly record struct RowLockClause
{
    private readonly ImmutableArray<string> _tables;

    private RowLockClause(LockStrength strength, LockWaitPolicy waitPolicy, TimeSpan? timeout, ImmutableArray<string> tables)
    {
        Strength = strength;
        WaitPolicy = waitPolicy;
        Timeout = timeout;
        _tables = tables;
    }

    /// <summary><c>FOR UPDATE</c>, waiting for conflicting locks.</summary>
    public static RowLockClause ForUpdate => new(LockStrength.Update, LockWaitPolicy.Wait, null, default);

    /// <summary><c>FOR NO KEY UPDATE</c>, waiting for conflicting locks.</summary>
    public static RowLockClause ForNoKeyUpdate => new(LockStrength.NoKeyUpdate, LockWaitPolicy.Wait, null, default);

    /// <summary><c>FOR SHARE</c>, waiting for conflicting locks.</summary>
    public static RowLockClause ForShare => new(LockStrength.Share, LockWaitPolicy.Wait, null, default);

    /// <summary><c>FOR KEY SHARE</c>, waiting for conflicting locks.</summary>
    public static RowLockClause ForKeyShare => new(LockStrength.KeyShare, LockWaitPolicy.Wait, null, default);

    /// <summary>The lock strength.</summary>
    public LockStrength Strength { get; }

    /// <summary>What happens when a row is already locked.</summary>
    public LockWaitPolicy WaitPolicy { get; }

    /// <summary>The longest wait when <see cref="WaitPolicy"/> is <see cref="LockWaitPolicy.Timeout"/>; otherwise null.</summary>
    public TimeSpan? Timeout { get; }

    /// <summary>The tables (or aliases) whose rows are locked; empty means every table in the FROM clause.</summary>
    public IReadOnlyList<string> Tables => _tables.IsDefault ? [] : _tables;

    /// <summary>The OF list without boxing it (<see cref="Tables"/> boxes); default when there is none.</summary>
    internal ImmutableArray<string> TableArray => _tables;

    /// <summary>Fail at once with <see cref="LockNotAvailableException"/> instead of waiting (<c>NOWAIT</c>).</summary>
    public RowLockClause NoWait() => new(Strength, LockWaitPolicy.NoWait, null, _tables);

    /// <summary>Leave rows that are locked by others out of the result (<c>SKIP LOCKED</c>).</summary>
    public RowLockClause SkipLocked() => new(Strength, LockWaitPolicy.SkipLocked, null, _tables);

    /// <summary>
    /// Wait at most <paramref name="timeout"/> (rounded up to whole milliseconds) for conflicting locks, then fail with
    /// <see cref="LockNotAvailableException"/>. The timeout applies to this lock only, never to later statements.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is zero, negative, infinite or longer than about 24 days.</exception>
    public RowLockClause WithTimeout(TimeSpan timeout) => new(Strength, LockWaitPolicy.Timeout, LockTimeout.Validate(timeout, nameof(timeout)), _tables);

    /// <summary>Lock only the rows of these tables (or aliases) of a join (<c>OF table, ...</c>). Names are quoted, never spliced.</summary>
    /// <exception cref="ArgumentException">No table, or a name that is empty, contains NUL or is longer than 63 bytes.</exception>
    public RowLockClause Of(params string[] tables)
    {
        ArgumentNullException.ThrowIfNull(tables);
        if (tables.Length == 0)
        {
            throw new ArgumentException("Name at least one table whose rows to lock.", nameof(tables));
        }

        foreach (var table in tables)
        {
            Identifier.Validate(table, nameof(tables));
        }

        return new(Strength, WaitPolicy, Timeout, [.. _tables.IsDefault ? [] : _tables, .. tables]);
    }

    /// <summary>The clause as PostgreSQL reads it, e.g. <c>FOR UPDATE OF "orders" NOWAIT</c>. A timeout is not part of the clause.</summary>
    public string ToSql()
    {
        var sql = new StringBuilder(Strength switch
        {
            LockStrength.Update => "FOR UPDATE",
            LockStrength.NoKeyUpdate => "FOR NO KEY UPDATE",
            LockStrength.Share => "FOR SHARE",
            LockStrength.KeyShare => "FOR KEY SHARE",
            _ => throw new InvalidOperationException($"Unknown lock strength {Strength}."),
        });
        if (!_tables.IsDefaultOrEmpty)
        {
            sql.Append(" OF ");
            for (var i = 0; i < _tables.Length; i++)
            {
                sql.Append(i == 0 ? "" : ", ").Append(Identifier.Quote(_tables[i], "tables"));
            }
        }

        sql.Append(WaitPolicy switch
        {
            LockWaitPolicy.NoWait => " NOWAIT",
            LockWaitPolicy.SkipLocked => " SKIP LOCKED",
            _ => "",
        });
        return sql.ToString();
    }

    /// <summary>The SQL clause, with the timeout when there is one: <c>FOR UPDATE (lock_timeout 200ms)</c>.</summary>
    public override string ToString() => Timeout is { } t
        ? string.Create(CultureInfo.InvariantCulture, $"{ToSql()} (lock_timeout {LockTimeout.Milliseconds(t)}ms)")
        : ToSql();

    /// <summary>Two clauses are equal when they render the same SQL with the same timeout.</summary>
    public bool Equals(RowLockClause other) =>
        Strength == other.Strength && WaitPolicy == other.WaitPolicy && Timeout == other.Timeout && Tables.SequenceEqual(other.Tables, StringComparer.Ordinal);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Strength);
        hash.Add(WaitPolicy);
        hash.Add(Timeout);
        foreach (var table in Tables)
        {
            hash.Add(table, StringComparer.Ordinal);
        }

        return hash.ToHashCode();
    }
}
