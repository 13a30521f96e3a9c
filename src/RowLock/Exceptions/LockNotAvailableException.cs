using Npgsql;

namespace RowLock;

/// <summary>
/// A lock could not be had at once (<c>NOWAIT</c>) or within its timeout (<c>lock_timeout</c>): SQLSTATE
/// <c>55P03</c>. The caller's transaction is still usable: RowLock rolled back to a savepoint it took before
/// asking for the lock. <see cref="Exception.Message"/> is written to be shown to an end user.
/// </summary>
public sealed class LockNotAvailableException : RowLockException
{
    /// <summary>The message used for row locks, suitable for a UI.</summary>
    public const string RowMessage = "This record is being modified by someone else; try again in a moment.";

    /// <summary>Creates the exception with the message to show and the server's error.</summary>
    public LockNotAvailableException(string message, PostgresException? innerException)
        : base(message, PostgresErrorCodes.LockNotAvailable, innerException)
    {
    }

    /// <summary>Creates the exception with <see cref="RowMessage"/>.</summary>
    public LockNotAvailableException()
        : base(RowMessage, PostgresErrorCodes.LockNotAvailable, null)
    {
    }

    /// <summary>The server's error, when the server reported one.</summary>
    public PostgresException? PostgresException => InnerException as PostgresException;
}
