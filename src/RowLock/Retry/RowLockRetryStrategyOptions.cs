using Polly;
using Polly.Retry;

namespace RowLock;

/// <summary>
/// Polly retry options preset for PostgreSQL conflicts: handles serialization failures (40001), deadlocks (40P01) and
/// connection loss before COMMIT, with exponential backoff and jitter (<see cref="RowLockRetryDefaults"/>). Every
/// <see cref="RetryStrategyOptions{TResult}"/> property can still be set, and it is validated the same way.
/// </summary>
/// <remarks>
/// Retrying only helps when the whole transaction is re-run: use it through <see cref="TransactionRunner"/>, or around
/// code that opens and commits its own transaction.
/// </remarks>
public class RowLockRetryStrategyOptions : RetryStrategyOptions
{
    /// <summary>Creates the options with RowLock's defaults.</summary>
    public RowLockRetryStrategyOptions()
    {
        Name = "RowLockRetry";
        MaxRetryAttempts = RowLockRetryDefaults.MaxRetryAttempts;
        Delay = RowLockRetryDefaults.Delay;
        MaxDelay = RowLockRetryDefaults.MaxDelay;
        BackoffType = DelayBackoffType.Exponential;
        UseJitter = true;
        ShouldHandle = _defaultShouldHandle = DefaultShouldHandle();
    }

    /// <summary>The predicate the constructor installs; it reads this instance's flags, so a snapshot needs its own.</summary>
    private Func<RetryPredicateArguments<object>, ValueTask<bool>> _defaultShouldHandle;

    /// <summary>
    /// Also retry 55P03 lock_not_available (NOWAIT or a lock timeout), as Odoo does. Off by default: a NOWAIT usually
    /// means "tell the user now", not "try again".
    /// </summary>
    /// <value>The default is false.</value>
    public bool RetryOnLockNotAvailable { get; set; }

    /// <summary>Retry when the connection is lost before COMMIT was sent (the transaction certainly rolled back).</summary>
    /// <value>The default is true.</value>
    public bool RetryOnConnectionLoss { get; set; } = true;

    /// <summary>
    /// Also retry <see cref="UnexpectedRowCountException"/>: a deferred write given <c>expectedRows</c> (an optimistic version
    /// check) affected another number of rows because another writer won; the whole unit of work runs again and reads
    /// the new version. Off by default: a mismatch may also be a bug that no retry cures.
    /// </summary>
    /// <value>The default is false.</value>
    public bool RetryOnUnexpectedRowCount { get; set; }

    /// <summary>The default decision: what <see cref="RowLockPredicates"/> calls retryable under these options.</summary>
    public bool ShouldRetry(Exception exception) =>
        RowLockPredicates.IsRetryable(exception, RetryOnLockNotAvailable, RetryOnConnectionLoss)
        || (RetryOnUnexpectedRowCount && exception is not OperationCanceledException && RowLockPredicates.IsUnexpectedRowCount(exception));

    /// <summary>
    /// A copy of every property, this class's and Polly's (including any Polly adds later), that no later change to
    /// this instance affects. The default <see cref="RetryStrategyOptions{TResult}.ShouldHandle"/> is rebound to the
    /// copy's flags; a predicate you set is kept as is.
    /// </summary>
    internal RowLockRetryStrategyOptions Snapshot()
    {
        var copy = (RowLockRetryStrategyOptions)MemberwiseClone();
        copy._defaultShouldHandle = copy.DefaultShouldHandle();
        if (ShouldHandle == _defaultShouldHandle)
        {
            copy.ShouldHandle = copy._defaultShouldHandle;
        }

        return copy;
    }

    /// <summary>Is <see cref="RetryStrategyOptions{TResult}.ShouldHandle"/> RowLock's default, which never retries a result (only exceptions)?</summary>
    internal bool HandlesOnlyExceptions => ShouldHandle == _defaultShouldHandle;

    private Func<RetryPredicateArguments<object>, ValueTask<bool>> DefaultShouldHandle() =>
        args => new ValueTask<bool>(args.Outcome.Exception is { } e && ShouldRetry(e));
}
