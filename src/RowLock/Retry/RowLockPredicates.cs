using System.Net.Sockets;
using Npgsql;

namespace RowLock;

/// <summary>
/// Classifies PostgreSQL failures for retry decisions, looking through wrapping exceptions (inner and aggregate).
/// Public so that you can use them in your own Polly pipelines: <c>ShouldHandle = args =&gt; ValueTask.FromResult(RowLockPredicates.IsRetryable(args.Outcome.Exception))</c>.
/// </summary>
public static class RowLockPredicates
{
    /// <summary>The SQLSTATE used in logs and metrics for a connection lost before COMMIT (it has none of its own).</summary>
    public const string ConnectionLostState = "connection_lost";

    /// <summary>40001 serialization_failure: a REPEATABLE READ / SERIALIZABLE snapshot conflict. Safe to retry the whole transaction.</summary>
    public static bool IsSerializationFailure(Exception? exception) => FindSqlState(exception) == PostgresErrorCodes.SerializationFailure;

    /// <summary>40P01 deadlock_detected: this transaction was chosen as the deadlock victim. Safe to retry the whole transaction.</summary>
    public static bool IsDeadlock(Exception? exception) => FindSqlState(exception) == PostgresErrorCodes.DeadlockDetected;

    /// <summary>55P03 lock_not_available (NOWAIT or lock_timeout), including <see cref="LockNotAvailableException"/>.</summary>
    public static bool IsLockNotAvailable(Exception? exception) => FindSqlState(exception) == PostgresErrorCodes.LockNotAvailable;

    /// <summary>
    /// A write given <c>expectedRows</c> affected another number of rows (<see cref="UnexpectedRowCountException"/>), so the
    /// server skipped COMMIT. Safe to retry the whole unit of work, which reads the rows again.
    /// </summary>
    public static bool IsUnexpectedRowCount(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case UnexpectedRowCountException:
                    return true;
                case AggregateException aggregate when aggregate.InnerExceptions.Count == 1:
                    return IsUnexpectedRowCount(aggregate.InnerExceptions[0]);
            }
        }

        return false;
    }

    /// <summary>
    /// The session ended or could not be had: a network error, class 08, or any server error that ends the session
    /// (severity FATAL or PANIC, e.g. terminated backend 57P01, shutdown 57P02, starting up 57P03, idle-session timeout
    /// 57P05, idle-in-transaction timeout 25P03, too many connections 53300). Safe to retry on a new connection when it
    /// happened before COMMIT was sent; RowLock reports a loss during COMMIT as <see cref="CommitOutcomeUnknownException"/>,
    /// which this never matches. A connection refused for its configuration (wrong password or role, class 28; no such
    /// database, 3D000) is not a loss: retrying cannot fix it.
    /// </summary>
    public static bool IsConnectionLoss(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case RowLockException:
                    return false;
                case PostgresException pg:
                    return EndsSession(pg);
                case ConnectionLostBeforeCommitException or IOException or SocketException or EndOfStreamException:
                    return true;
                case AggregateException aggregate when aggregate.InnerExceptions.Count == 1:
                    return IsConnectionLoss(aggregate.InnerExceptions[0]);
            }
        }

        return false;
    }

    /// <summary>
    /// What RowLock retries by default: serialization failures, deadlocks and connection loss before COMMIT; lock not
    /// available only when <paramref name="includeLockNotAvailable"/> is set. Never statement timeouts or cancellation (57014).
    /// </summary>
    public static bool IsRetryable(Exception? exception, bool includeLockNotAvailable = false) =>
        IsRetryable(exception, includeLockNotAvailable, includeConnectionLoss: true);

    internal static bool IsRetryable(Exception? exception, bool includeLockNotAvailable, bool includeConnectionLoss) =>
        exception is not OperationCanceledException &&
        (IsSerializationFailure(exception) || IsDeadlock(exception) ||
         (includeConnectionLoss && IsConnectionLoss(exception)) ||
         (includeLockNotAvailable && IsLockNotAvailable(exception)));

    /// <summary>25P03 idle_in_transaction_session_timeout (FATAL); Npgsql has no constant for it.</summary>
    internal const string IdleInTransactionSessionTimeout = "25P03";

    /// <summary>Did the server end (or refuse) the session with this error, for a reason a new connection can cure?</summary>
    private static bool EndsSession(PostgresException pg)
    {
        if (pg.SqlState.StartsWith("28", StringComparison.Ordinal) || pg.SqlState == PostgresErrorCodes.InvalidCatalogName)
        {
            return false;
        }

        return pg.SqlState.StartsWith("08", StringComparison.Ordinal)
            || pg.SqlState is PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow
                or PostgresErrorCodes.IdleSessionTimeout or IdleInTransactionSessionTimeout
            || pg.InvariantSeverity is "FATAL" or "PANIC";
    }

    /// <summary>
    /// The SQLSTATE of the first server error found in <paramref name="exception"/> or its inner exceptions, or null.
    /// Stops at RowLock's own exceptions, whose <see cref="RowLockException.SqlState"/> is used (so an exhausted retry is not retried again).
    /// </summary>
    public static string? FindSqlState(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case LockNotAvailableException:
                    return PostgresErrorCodes.LockNotAvailable;
                case RowLockException:
                    return null;
                case PostgresException pg:
                    return pg.SqlState;
                case AggregateException aggregate when aggregate.InnerExceptions.Count == 1:
                    return FindSqlState(aggregate.InnerExceptions[0]);
            }
        }

        return null;
    }
}
