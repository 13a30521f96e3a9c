namespace RowLock;

/// <summary>
/// Base class of the exceptions RowLock throws for database outcomes (as opposed to misuse, which gets
/// <see cref="ArgumentException"/> or <see cref="InvalidOperationException"/>).
/// </summary>
public class RowLockException : Exception
{
    /// <summary>Creates an exception with a message.</summary>
    public RowLockException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and the exception that caused it.</summary>
    public RowLockException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates an exception with a message, the SQLSTATE it stands for and the exception that caused it.</summary>
    public RowLockException(string message, string? sqlState, Exception? innerException)
        : base(message, innerException)
    {
        SqlState = sqlState;
    }

    /// <summary>The PostgreSQL SQLSTATE behind this failure (see <c>Npgsql.PostgresErrorCodes</c>), or null when none applies.</summary>
    public string? SqlState { get; }
}
