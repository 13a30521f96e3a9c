using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// A PostgreSQL locking clause: strength (<see cref="ForUpdate"/>, <see cref="ForNoKeyUpdate"/>,
/// <see cref="ForShare"/>, <see cref="ForKeyShare"/>), wait policy (<see cref="NoWait"/>, <see cref="SkipLocked"/>,
/// <see cref="WithTimeout"/>, optionally <see cref="WithoutSavepoint"/>) and an optional <see cref="Of"/> table list.
/// Immutable: every method returns a new clause, and the last wait policy set wins.
/// </summary>
/// <example><code>var clause = RowLockClause.ForUpdate.Of("orders").NoWait(); // FOR UPDATE OF "orders" NOWAIT</code></example>
public readonly record struct RowLockClause
{
    private readonly ImmutableArray<string> _tables;

    // Default false, so that default(RowLockClause) and every clause built before WithoutSavepoint existed keep the savepoint.
    private readonly bool _withoutSavepoint;

    private RowLockClause(LockStrength strength, LockWaitPolicy waitPolicy, TimeSpan? timeout, ImmutableArray<string> tables, bool withoutSavepoint = false)
    {
        Strength = strength;
        WaitPolicy = waitPolicy;
        Timeout = timeout;
        _tables = tables;
        _withoutSavepoint = withoutSavepoint;
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

    /// <summary>
    /// True when the lock runs inside a savepoint: <see cref="LockWaitPolicy.NoWait"/> and <see cref="LockWaitPolicy.Timeout"/>,
    /// unless <see cref="WithoutSavepoint"/> was called. Waiting and <c>SKIP LOCKED</c> never need one (they cannot fail with 55P03).
    /// </summary>
    public bool UsesSavepoint => WaitPolicy is LockWaitPolicy.NoWait or LockWaitPolicy.Timeout && !_withoutSavepoint;

    /// <summary>NOWAIT or timed, sent as a plain statement (<see cref="WithoutSavepoint"/>).</summary>
    internal bool SkipsSavepoint => _withoutSavepoint;

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

    /// <summary>
    /// Sends the <see cref="NoWait"/> or <see cref="WithTimeout"/> lock as a plain statement, without the savepoint RowLock
    /// otherwise wraps it in. Each savepoint that locks a row is a subtransaction with its own transaction id, and past 64 of
    /// them in one open transaction PostgreSQL's per-backend cache overflows and every snapshot in the cluster has to
    /// consult pg_subtrans (the "subtransaction cliff"). Use this when you take many locks one by one in one transaction
    /// and roll the whole transaction back when one fails anyway (as <see cref="TransactionRunner"/> does). Locking many
    /// rows in one statement (<see cref="RowLockTransactionExtensions.LockRowsByKeyAsync{T, TKey}"/>) is the other way around it.
    /// </summary>
    /// <remarks>
    /// When the lock is not granted, <see cref="LockNotAvailableException"/> is still thrown, but <b>your transaction is
    /// aborted</b>: every later statement fails with 25P02 (in_failed_sql_transaction) until you roll it back (or back to
    /// a savepoint of your own). The same holds for any other server error. On success a timed lock still puts your
    /// lock_timeout back in the same round trip; on failure the rollback you must do undoes it. Setting another wait
    /// policy afterwards (<see cref="NoWait"/>, <see cref="SkipLocked"/>, <see cref="WithTimeout"/>) brings the savepoint back.
    /// Not supported by RowLock.EntityFrameworkCore's <c>WithRowLock</c>, which refuses it.
    /// </remarks>
    /// <exception cref="InvalidOperationException">The clause waits or skips locked rows: there is no savepoint to leave out. Call <see cref="NoWait"/> or <see cref="WithTimeout"/> first.</exception>
    /// <example><code>var clause = RowLockClause.ForUpdate.NoWait().WithoutSavepoint(); // FOR UPDATE NOWAIT, no savepoint</code></example>
    public RowLockClause WithoutSavepoint() => WaitPolicy is LockWaitPolicy.NoWait or LockWaitPolicy.Timeout
        ? new(Strength, WaitPolicy, Timeout, _tables, withoutSavepoint: true)
        : throw new InvalidOperationException(
            $"{ToSql()} runs without a savepoint already: only NoWait() and WithTimeout(...) use one. Call NoWait() or WithTimeout(...) before WithoutSavepoint().");

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

        return new(Strength, WaitPolicy, Timeout, [.. _tables.IsDefault ? [] : _tables, .. tables], _withoutSavepoint);
    }

    /// <summary>
    /// The clause as PostgreSQL reads it, e.g. <c>FOR UPDATE OF "orders" NOWAIT</c>. A timeout and <see cref="WithoutSavepoint"/>
    /// are not part of the clause (<see cref="ToString"/> shows them).
    /// </summary>
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

    /// <summary>
    /// The SQL clause, with what is not part of it in parentheses: <c>FOR UPDATE (lock_timeout 200ms)</c>,
    /// <c>FOR UPDATE NOWAIT (without savepoint)</c>, <c>FOR UPDATE (lock_timeout 200ms, without savepoint)</c>.
    /// </summary>
    public override string ToString() => (Timeout, _withoutSavepoint) switch
    {
        ({ } t, false) => string.Create(CultureInfo.InvariantCulture, $"{ToSql()} (lock_timeout {LockTimeout.Milliseconds(t)}ms)"),
        ({ } t, true) => string.Create(CultureInfo.InvariantCulture, $"{ToSql()} (lock_timeout {LockTimeout.Milliseconds(t)}ms, without savepoint)"),
        (null, true) => $"{ToSql()} (without savepoint)",
        (null, false) => ToSql(),
    };

    /// <summary>Two clauses are equal when they render the same SQL with the same timeout, both with or both without a savepoint.</summary>
    public bool Equals(RowLockClause other) =>
        Strength == other.Strength && WaitPolicy == other.WaitPolicy && Timeout == other.Timeout && _withoutSavepoint == other._withoutSavepoint
        && Tables.SequenceEqual(other.Tables, StringComparer.Ordinal);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Strength);
        hash.Add(WaitPolicy);
        hash.Add(Timeout);
        hash.Add(_withoutSavepoint);
        foreach (var table in Tables)
        {
            hash.Add(table, StringComparer.Ordinal);
        }

        return hash.ToHashCode();
    }
}
