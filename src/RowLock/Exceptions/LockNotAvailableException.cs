using Npgsql;

namespace RowLock;

/// <summary>
/// A lock could not be had at once (<c>NOWAIT</c>) or within its timeout (<c>lock_timeout</c>): SQLSTATE
/// <c>55P03</c>. The caller's transaction is still usable: RowLock rolled back to a savepoint it took before
/// asking for the lock. Not so for a row lock asked for with <see cref="RowLockClause.WithoutSavepoint"/>: then the
/// transaction is aborted and must be rolled back (the message says so). <see cref="Exception.Message"/> is for developers and logs (SQLSTATE, clause or key);
/// <see cref="UserMessage"/> is a sentence a UI can show as is. <see cref="IsTransient"/> is true: trying again later may succeed.
/// </summary>
public sealed class LockNotAvailableException : RowLockException
{
    /// <summary>The sentence for end users when a row lock is not available (the default <see cref="UserMessage"/>).</summary>
    public const string RowMessage = "This record is being modified by someone else; try again in a moment.";

    /// <summary>The sentence for end users when an advisory lock is not available.</summary>
    public const string AdvisoryMessage = "This operation is already running elsewhere; try again in a moment.";

    /// <summary>Creates the exception with a developer-facing message and the server's error; <see cref="UserMessage"/> is <see cref="RowMessage"/>.</summary>
    public LockNotAvailableException(string message, PostgresException? innerException)
        : this(message, RowMessage, innerException)
    {
    }

    /// <summary>Creates the exception with a developer-facing message, the sentence to show end users, and the server's error.</summary>
    public LockNotAvailableException(string message, string userMessage, PostgresException? innerException)
        : base(message, PostgresErrorCodes.LockNotAvailable, innerException)
    {
        ArgumentException.ThrowIfNullOrEmpty(userMessage);
        UserMessage = userMessage;
    }

    /// <summary>Creates the exception with a generic developer message; <see cref="UserMessage"/> is <see cref="RowMessage"/>.</summary>
    public LockNotAvailableException()
        : this("55P03 lock_not_available: the lock is held by another transaction.", RowMessage, null)
    {
    }

    /// <summary>A sentence an end user can read (e.g. <see cref="RowMessage"/>); it names no SQL, table or key.</summary>
    public string UserMessage { get; }

    /// <summary>The server's error, when the server reported one.</summary>
    public PostgresException? PostgresException => InnerException as PostgresException;

    /// <summary>True: the lock was held by someone else at that moment; a later try may get it.</summary>
    public override bool IsTransient => true;
}
