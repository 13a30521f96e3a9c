namespace RowLock;

/// <summary>
/// The event ids of every log event RowLock writes, for filters and alerts (e.g. alert on
/// <see cref="UnitOfWorkRetriesExhausted"/>, sample <see cref="UnitOfWorkRetrying"/>). Advisory-lock events (100-199) are
/// logged under the category <c>RowLock.AdvisoryLocks</c> by <see cref="AdvisoryLocks"/> and the handles it returns;
/// unit-of-work events (200-299) under <c>RowLock.TransactionRunner</c> (or the logger given to the runner).
/// </summary>
public static class RowLockEventIds
{
    /// <summary>100, Debug: an advisory lock was acquired (session or transaction scope).</summary>
    public const int AdvisoryLockAcquired = 100;

    /// <summary>101, Information: an advisory lock was held by another session and the caller did not wait for it.</summary>
    public const int AdvisoryLockSkipped = 101;

    /// <summary>102, Warning: an advisory lock was not granted within its timeout.</summary>
    public const int AdvisoryLockTimedOut = 102;

    /// <summary>103, Debug: a session advisory lock was granted just as its timeout fired; the handle keeps it.</summary>
    public const int AdvisoryLockGrantedAtTimeout = 103;

    /// <summary>104, Debug: an advisory lock was released.</summary>
    public const int AdvisoryLockReleased = 104;

    /// <summary>105, Error: an advisory lock was lost because its connection died (the server released it).</summary>
    public const int AdvisoryLockLost = 105;

    /// <summary>106, Warning: a session advisory lock was not held when its handle released it.</summary>
    public const int AdvisoryLockNotHeldAtRelease = 106;

    /// <summary>107, Warning: an advisory lock could not be released; its connection was closed instead of pooled.</summary>
    public const int AdvisoryLockReleaseFailed = 107;

    /// <summary>108, Warning: an advisory lock handle was garbage-collected without being disposed; its lock was released then.</summary>
    public const int AdvisoryLockAbandoned = 108;

    /// <summary>200, Information (Warning for a lost connection): an attempt of a unit of work failed with a retryable
    /// error and will be retried. One line: attempt, SQLSTATE, delay; no exception (see <see cref="UnitOfWorkRetryDetail"/>).</summary>
    public const int UnitOfWorkRetrying = 200;

    /// <summary>201, Error: a unit of work ran out of attempts; carries the last exception.</summary>
    public const int UnitOfWorkRetriesExhausted = 201;

    /// <summary>202, Error: the connection was lost while COMMIT was in flight, so the outcome is unknown; carries the exception.</summary>
    public const int UnitOfWorkCommitOutcomeUnknown = 202;

    /// <summary>
    /// 300, Warning: a lock wait passed its warning threshold (default 5 s) and was still going on: names the waiting pid,
    /// what it waits for, the session blocking it and what that session is doing, from one lock-wait snapshot. Logged by
    /// <see cref="AdvisoryLocks"/> (category <c>RowLock.AdvisoryLocks</c>) and <see cref="TransactionRunner"/>.
    /// </summary>
    public const int LockWaitPassedThreshold = 300;

    /// <summary>203, Debug: the exception behind a <see cref="UnitOfWorkRetrying"/> event, with its stack trace.</summary>
    public const int UnitOfWorkRetryDetail = 203;
}
