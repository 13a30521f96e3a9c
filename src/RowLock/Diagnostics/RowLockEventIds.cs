namespace RowLock;

/// <summary>
/// The <see cref="Microsoft.Extensions.Logging.EventId"/> of every log event RowLock writes, for filters and alerts
/// (e.g. alert on <see cref="UnitOfWorkRetriesExhausted"/>, sample <see cref="UnitOfWorkRetrying"/>).
/// </summary>
public static class RowLockEventIds
{
    /// <summary>200, Information (Warning for a lost connection): an attempt of a unit of work failed with a retryable
    /// error and will be retried. One line: attempt, SQLSTATE, delay; no exception (see <see cref="UnitOfWorkRetryDetail"/>).</summary>
    public const int UnitOfWorkRetrying = 200;

    /// <summary>201, Error: a unit of work ran out of attempts; carries the last exception.</summary>
    public const int UnitOfWorkRetriesExhausted = 201;

    /// <summary>202, Error: the connection was lost while COMMIT was in flight, so the outcome is unknown; carries the exception.</summary>
    public const int UnitOfWorkCommitOutcomeUnknown = 202;

    /// <summary>203, Debug: the exception behind a <see cref="UnitOfWorkRetrying"/> event, with its stack trace.</summary>
    public const int UnitOfWorkRetryDetail = 203;
}
