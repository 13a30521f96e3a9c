using Microsoft.Extensions.Logging;

namespace RowLock.Internal;

/// <summary>RowLock's log events (source-generated, so a disabled level costs nothing).</summary>
internal static partial class Log
{
    [LoggerMessage(100, LogLevel.Debug, "Acquired advisory lock {Key} ({Mode}, {Scope} scope)")]
    public static partial void AdvisoryAcquired(ILogger logger, AdvisoryLockKey key, AdvisoryLockMode mode, string scope);

    [LoggerMessage(101, LogLevel.Information, "Advisory lock {Key} ({Mode}) is held by another session; skipped")]
    public static partial void AdvisorySkipped(ILogger logger, AdvisoryLockKey key, AdvisoryLockMode mode);

    [LoggerMessage(102, LogLevel.Warning, "Advisory lock {Key} ({Mode}) was not granted within {TimeoutMs} ms")]
    public static partial void AdvisoryTimedOut(ILogger logger, AdvisoryLockKey key, AdvisoryLockMode mode, int timeoutMs);

    [LoggerMessage(103, LogLevel.Debug, "Advisory lock {Key} was granted just as its timeout fired; keeping it")]
    public static partial void AdvisoryGrantedAtTimeout(ILogger logger, AdvisoryLockKey key);

    [LoggerMessage(104, LogLevel.Debug, "Released advisory lock {Key} ({Mode})")]
    public static partial void AdvisoryReleased(ILogger logger, AdvisoryLockKey key, AdvisoryLockMode mode);

    [LoggerMessage(105, LogLevel.Error, "Advisory lock {Key} was lost: its connection died, so the server released it")]
    public static partial void AdvisoryLost(ILogger logger, AdvisoryLockKey key, Exception? exception);

    [LoggerMessage(106, LogLevel.Warning, "Advisory lock {Key} was not held when released (pg_advisory_unlock returned false)")]
    public static partial void AdvisoryNotHeldAtRelease(ILogger logger, AdvisoryLockKey key);

    [LoggerMessage(107, LogLevel.Warning, "Could not release advisory lock {Key}; its connection is closed instead of returned to the pool")]
    public static partial void AdvisoryReleaseFailed(ILogger logger, AdvisoryLockKey key, Exception exception);
}
