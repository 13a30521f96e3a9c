using System.Data.Common;

namespace RowLock;

/// <summary>
/// Base class of the exceptions RowLock throws for database outcomes (as opposed to misuse, which gets
/// <see cref="ArgumentException"/> or <see cref="InvalidOperationException"/>). It is a <see cref="DbException"/>, so
/// retry policies that classify on <see cref="DbException.IsTransient"/> (Polly, EF Core, your own) treat each subclass
/// right: a lock that was not available is transient, a COMMIT whose outcome is unknown is not.
/// </summary>
public class RowLockException : DbException
{
    private readonly string? _sqlState;

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
        _sqlState = sqlState;
    }

    /// <summary>The PostgreSQL SQLSTATE behind this failure (see <c>Npgsql.PostgresErrorCodes</c>), or null when none applies.</summary>
    public override string? SqlState => _sqlState;
}
