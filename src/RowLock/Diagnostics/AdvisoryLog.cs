using Microsoft.Extensions.Logging;

namespace RowLock.Internal;

/// <summary>The advisory-lock log events (source-generated, so a disabled level costs nothing), category <c>RowLock.AdvisoryLocks</c>.</summary>
internal static partial class AdvisoryLog
{
    public const string Category = "RowLock.AdvisoryLocks";

    [LoggerMessage(RowLockEventIds.AdvisoryLockAcquired, LogLevel.Debug, "Acquired advisory lock {Key} ({Mode}, {Scope} scope)")]
    public static partial void Acquired(ILogger logger, AdvisoryLockKey key, AdvisoryLockMode mode, string scope);

    [LoggerMessage(RowLockEventIds.AdvisoryLockSkipped, LogLevel.Information, "Advisory lock {Key} ({Mode}) is held by another session; skipped")]
    public static partial void Skipped(ILogger logger, AdvisoryLockKey key, AdvisoryLockMode mode);

    [LoggerMessage(RowLockEventIds.AdvisoryLockTimedOut, LogLevel.Warning, "Advisory lock {Key} ({Mode}) was not granted within {TimeoutMs} ms")]
    public static partial void TimedOut(ILogger logger, AdvisoryLockKey key, AdvisoryLockMode mode, int timeoutMs);

    [LoggerMessage(RowLockEventIds.AdvisoryLockGrantedAtTimeout, LogLevel.Debug, "Advisory lock {Key} was granted just as its timeout fired; keeping it")]
    public static partial void GrantedAtTimeout(ILogger logger, AdvisoryLockKey key);

    [LoggerMessage(RowLockEventIds.AdvisoryLockReleased, LogLevel.Debug, "Released advisory lock {Key} ({Mode})")]
    public static partial void Released(ILogger logger, AdvisoryLockKey key, AdvisoryLockMode mode);

    [LoggerMessage(RowLockEventIds.AdvisoryLockLost, LogLevel.Error, "Advisory lock {Key} was lost: its connection died, so the server released it")]
    public static partial void Lost(ILogger logger, AdvisoryLockKey key, Exception? exception);

    [LoggerMessage(RowLockEventIds.AdvisoryLockNotHeldAtRelease, LogLevel.Warning, "Advisory lock {Key} was not held when released (pg_advisory_unlock returned false)")]
    public static partial void NotHeldAtRelease(ILogger logger, AdvisoryLockKey key);

    [LoggerMessage(RowLockEventIds.AdvisoryLockReleaseFailed, LogLevel.Warning, "Could not release advisory lock {Key}; its connection is closed instead of returned to the pool")]
    public static partial void ReleaseFailed(ILogger logger, AdvisoryLockKey key, Exception exception);

    [LoggerMessage(RowLockEventIds.AdvisoryLockAbandoned, LogLevel.Warning, "Advisory lock {Key} ({Mode}) was released after its handle was garbage-collected without being disposed")]
    public static partial void Abandoned(ILogger logger, AdvisoryLockKey key, AdvisoryLockMode mode);
}
