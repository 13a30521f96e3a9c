namespace RowLock;

/// <summary>The defaults of <see cref="RowLockRetryStrategyOptions"/>, chosen for database conflicts rather than remote calls.</summary>
public static class RowLockRetryDefaults
{
    /// <summary>10 retries (11 runs in all): conflicts on a hot row clear within a few retries once backoff spreads the contenders out.</summary>
    public const int MaxRetryAttempts = 10;

    /// <summary>10 ms: about the length of a short transaction, so the winner has usually committed when the loser retries.</summary>
    public static readonly TimeSpan Delay = TimeSpan.FromMilliseconds(10);

    /// <summary>1 s: beyond that, waiting more does not help a database conflict; failing and alerting does.</summary>
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(1);
}
