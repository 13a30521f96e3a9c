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

    /// <summary>A copy, retry options included, that no later change to this instance affects.</summary>
    internal TransactionRunnerOptions Snapshot()
    {
        var copy = (TransactionRunnerOptions)MemberwiseClone();
        copy.Retry = Retry.Snapshot();
        return copy;
    }
}
