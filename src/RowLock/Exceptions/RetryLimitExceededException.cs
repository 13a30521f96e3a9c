using System.Globalization;

namespace RowLock;

/// <summary>
/// A unit of work kept failing with retryable errors until its retry budget ran out. The last database error
/// is the <see cref="Exception.InnerException"/>.
/// </summary>
public sealed class RetryLimitExceededException : RowLockException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="attempts">How many times the unit of work ran.</param>
    /// <param name="sqlState">The SQLSTATE of the last failure, when it was a server error.</param>
    /// <param name="innerException">The last failure.</param>
    public RetryLimitExceededException(int attempts, string? sqlState, Exception innerException)
        : base(string.Create(CultureInfo.InvariantCulture,
                $"The unit of work failed {attempts} times; the last failure was {Describe(sqlState)}. Lock the rows you read first (FOR UPDATE) to avoid the conflict, or allow more attempts."),
            sqlState, innerException)
    {
        Attempts = attempts;
    }

    /// <summary>How many times the unit of work ran (the first run plus the retries).</summary>
    public int Attempts { get; }

    /// <summary>As the last failure: transient when it was (another run later may succeed), false otherwise.</summary>
    public override bool IsTransient => InnerException is System.Data.Common.DbException db
        ? db.IsTransient
        : RowLockPredicates.IsRetryable(InnerException, includeLockNotAvailable: true);

    private static string Describe(string? sqlState) => sqlState switch
    {
        null => "a lost connection",
        Npgsql.PostgresErrorCodes.SerializationFailure => "40001 serialization_failure",
        Npgsql.PostgresErrorCodes.DeadlockDetected => "40P01 deadlock_detected",
        Npgsql.PostgresErrorCodes.LockNotAvailable => "55P03 lock_not_available",
        _ => "SQLSTATE " + sqlState,
    };
}
