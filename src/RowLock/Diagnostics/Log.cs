using Microsoft.Extensions.Logging;

namespace RowLock.Internal;

/// <summary>The unit-of-work runner's log events (source-generated, so a disabled level costs nothing); advisory-lock events are in AdvisoryLog.</summary>
internal static partial class Log
{
    [LoggerMessage(200, LogLevel.Warning, "Unit of work attempt {Attempt} failed with {SqlState}; retrying in {DelayMs} ms")]
    public static partial void Retrying(ILogger logger, int attempt, string sqlState, double delayMs, Exception exception);

    [LoggerMessage(201, LogLevel.Error, "Unit of work failed {Attempts} times, last with {SqlState}; giving up")]
    public static partial void RetriesExhausted(ILogger logger, int attempts, string sqlState, Exception exception);

    [LoggerMessage(202, LogLevel.Error, "The connection was lost while COMMIT was in flight; the outcome is unknown and the unit of work is not retried")]
    public static partial void CommitOutcomeUnknown(ILogger logger, Exception exception);
}
