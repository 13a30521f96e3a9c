using System.Data;

namespace RowLock;

/// <summary>How <see cref="TransactionRunner"/> runs each unit of work.</summary>
public sealed class TransactionRunnerOptions
{
    /// <summary>The isolation level of each attempt's transaction.</summary>
    /// <value>The default is <see cref="IsolationLevel.ReadCommitted"/>: with row locks taken before reading, it gives exact results without 40001s.</value>
    public IsolationLevel IsolationLevel { get; set; } = IsolationLevel.ReadCommitted;

    /// <summary>The retry policy. Set <c>MaxRetryAttempts</c> etc. here; <c>OnRetry</c> is called after RowLock's own logging.</summary>
    /// <value>RowLock's defaults (<see cref="RowLockRetryDefaults"/>).</value>
    public RowLockRetryStrategyOptions Retry { get; set; } = new();

    /// <summary>The clock for backoff delays; tests can pass one that does not really sleep.</summary>
    /// <value>The default is <see cref="TimeProvider.System"/>.</value>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>
    /// How long an attempt may run before RowLock checks whether it waits on a lock: if it does, one Warning (event
    /// <see cref="RowLockEventIds.LockWaitPassedThreshold"/>) names the session it waits behind and what that session is
    /// doing, while the wait goes on, and <c>rowlock.lock.wait.long</c> counts it. Covers every lock the work waits for
    /// (row locks, advisory locks, table locks, through RowLock's helpers or plain SQL). The check is one lock-wait
    /// snapshot on another connection of the data source, every threshold while the attempt runs, until one wait is found.
    /// </summary>
    /// <value>Default 5 seconds; <see cref="TimeSpan.Zero"/> or <see cref="Timeout.InfiniteTimeSpan"/> turns it off.</value>
    public TimeSpan LockWaitWarningThreshold { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Whether the runner verifies, in its COMMIT round trip, that the transaction it commits is the one it began. It marks
    /// its transaction with a savepoint sent with BEGIN (no round trip of its own) and releases it just before COMMIT: a
    /// work that ended the runner's transaction itself and began another one (a raw <c>COMMIT; BEGIN</c> in one command,
    /// <c>COMMIT AND CHAIN</c>) has lost the savepoint, so the release fails, the server skips COMMIT, and the runner throws
    /// <see cref="InvalidOperationException"/> instead of committing the second half of the work on its own.
    /// </summary>
    /// <remarks>
    /// The price is a subtransaction per unit of work: the work runs inside the savepoint, which gets a transaction id of
    /// its own when it locks or writes a row. On one hot row updated by 16 and 32 workers that cost between 6% and 21% of
    /// the throughput in two runs (benchmark 2 in the repository's docs/benchmarks.md, variant (h) against (b));
    /// uncontended it is within the noise. Turn it off only when no unit of work sends transaction control statements: off,
    /// the runner cannot tell its transaction from one the work began while the session stayed in a transaction, so after a
    /// <c>ROLLBACK AND CHAIN</c> (or <c>ROLLBACK; BEGIN</c>) the work's first half is lost without an error and the runner
    /// reports success. It still refuses to commit an aborted transaction (a check statement fails before COMMIT) and a
    /// transaction the work ended with a plain COMMIT or ROLLBACK of its own (Npgsql sees the session leave it).
    /// </remarks>
    /// <value>The default is true: the guarantee is worth more than the subtransaction.</value>
    public bool VerifyTransactionOwnership { get; set; } = true;

    /// <summary>A copy, retry options included, that no later change to this instance affects.</summary>
    internal TransactionRunnerOptions Snapshot()
    {
        var copy = (TransactionRunnerOptions)MemberwiseClone();
        copy.Retry = Retry.Snapshot();
        return copy;
    }
}
