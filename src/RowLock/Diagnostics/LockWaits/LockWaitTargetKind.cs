namespace RowLock;

/// <summary>What a waiting session waits for, as far as <c>pg_locks</c> tells.</summary>
public enum LockWaitTargetKind
{
    /// <summary>A lock type this library does not interpret (page, object, extend, virtualxid...); see <see cref="LockWaitTarget.LockType"/>.</summary>
    Other = 0,

    /// <summary>
    /// A row: the session wants a row lock (FOR UPDATE, UPDATE, DELETE...) that another transaction holds. It either waits
    /// on that transaction's id while holding the row's tuple lock (the first waiter), or waits for the tuple lock itself
    /// (the waiters behind it). <see cref="LockWaitTarget.Relation"/> and <see cref="LockWaitTarget.Ctid"/> name the row.
    /// </summary>
    Row = 1,

    /// <summary>
    /// Another transaction's end, with no row known: typically an insert waiting to see whether a conflicting
    /// uncommitted row with the same unique key commits. See <see cref="LockWaitTarget.TransactionId"/>.
    /// </summary>
    TransactionId = 2,

    /// <summary>An advisory lock; see <see cref="LockWaitTarget.AdvisoryKey"/> and <see cref="LockWaitTarget.AdvisoryName"/>.</summary>
    Advisory = 3,

    /// <summary>A table-level lock (LOCK TABLE, ALTER TABLE, ...) on <see cref="LockWaitTarget.Relation"/>.</summary>
    Relation = 4,
}
