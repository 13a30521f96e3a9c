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

    /// <summary>A copy, retry options included, that no later change to this instance affects.</summary>
    internal TransactionRunnerOptions Snapshot()
    {
        var copy = (TransactionRunnerOptions)MemberwiseClone();
        copy.Retry = Retry.Snapshot();
        return copy;
    }
}
