using Microsoft.Extensions.Logging;

namespace RowLock.Internal;

/// <summary>
/// The unit-of-work runner's log events (source-generated, so a disabled level costs nothing). Each call is guarded:
/// a failing log sink must never fail, or change the outcome of, a unit of work.
/// </summary>
internal static partial class RunnerLog
{
    /// <summary>A routine retry: one line. Contention (40001, 40P01, 55P03) is Information; a lost connection is Warning.</summary>
    public static void Retrying(ILogger logger, int attempt, string sqlState, TimeSpan delay, bool connectionLost, Exception exception)
    {
        try
        {
            RetryingLine(logger, connectionLost ? LogLevel.Warning : LogLevel.Information, attempt, sqlState, delay.TotalMilliseconds);
            RetryDetail(logger, attempt, sqlState, exception);
        }
        catch (Exception)
        {
            // Logging must never fail a unit of work.
        }
    }

    public static void RetriesExhausted(ILogger logger, int attempts, string sqlState, Exception exception)
    {
        try
        {
            RetriesExhaustedEvent(logger, attempts, sqlState, exception);
        }
        catch (Exception)
        {
            // Logging must never fail a unit of work.
        }
    }

    public static void CommitOutcomeUnknown(ILogger logger, Exception exception)
    {
        try
        {
            CommitOutcomeUnknownEvent(logger, exception);
        }
        catch (Exception)
        {
            // Logging must never fail a unit of work.
        }
    }

    [LoggerMessage(EventId = RowLockEventIds.UnitOfWorkRetrying, Message = "Unit of work attempt {Attempt} failed with {SqlState}; retrying in {DelayMs} ms")]
    private static partial void RetryingLine(ILogger logger, LogLevel level, int attempt, string sqlState, double delayMs);

    [LoggerMessage(RowLockEventIds.UnitOfWorkRetryDetail, LogLevel.Debug, "Unit of work attempt {Attempt} failed with {SqlState}; the error that is retried")]
    private static partial void RetryDetail(ILogger logger, int attempt, string sqlState, Exception exception);

    [LoggerMessage(RowLockEventIds.UnitOfWorkRetriesExhausted, LogLevel.Error, "Unit of work failed {Attempts} times, last with {SqlState}; giving up")]
    private static partial void RetriesExhaustedEvent(ILogger logger, int attempts, string sqlState, Exception exception);

    [LoggerMessage(RowLockEventIds.UnitOfWorkCommitOutcomeUnknown, LogLevel.Error, "The connection was lost while COMMIT was in flight; the outcome is unknown and the unit of work is not retried")]
    private static partial void CommitOutcomeUnknownEvent(ILogger logger, Exception exception);
}
