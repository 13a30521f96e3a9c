namespace RowLock;

/// <summary>What a row lock does when another transaction holds a conflicting lock.</summary>
public enum LockWaitPolicy
{
    /// <summary>Wait until the other transaction ends (PostgreSQL's default).</summary>
    Wait = 0,

    /// <summary>
    /// <c>NOWAIT</c>: fail at once with <see cref="LockNotAvailableException"/>. Runs in a savepoint, so the transaction
    /// stays usable, unless <see cref="RowLockClause.WithoutSavepoint"/>.
    /// </summary>
    NoWait,

    /// <summary><c>SKIP LOCKED</c>: leave locked rows out of the result.</summary>
    SkipLocked,

    /// <summary>
    /// Wait at most <see cref="RowLockClause.Timeout"/>, then fail with <see cref="LockNotAvailableException"/>. Runs in a
    /// savepoint, so the transaction stays usable, unless <see cref="RowLockClause.WithoutSavepoint"/>.
    /// </summary>
    Timeout,
}
