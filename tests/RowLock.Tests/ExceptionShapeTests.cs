using System.Data.Common;
using Npgsql;

namespace RowLock.Tests;

/// <summary>RowLock's exceptions are DbExceptions whose IsTransient tells generic retry policies what to do.</summary>
public sealed class ExceptionShapeTests
{
    private static PostgresException Server(string sqlState) => new("server error", "ERROR", "ERROR", sqlState);

    [Fact]
    public void Every_rowlock_exception_is_a_db_exception_with_its_sqlstate()
    {
        DbException e = new LockNotAvailableException();
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, e.SqlState);
        Assert.IsAssignableFrom<DbException>(new CommitOutcomeUnknownException(new IOException("reset")));
        Assert.IsAssignableFrom<DbException>(new RetryLimitExceededException(3, PostgresErrorCodes.SerializationFailure, Server(PostgresErrorCodes.SerializationFailure)));
    }

    [Fact]
    public void A_lock_not_available_is_transient_and_an_unknown_commit_is_not()
    {
        Assert.True(new LockNotAvailableException().IsTransient);
        Assert.False(new CommitOutcomeUnknownException(new IOException("reset")).IsTransient);
    }

    [Fact]
    public void Exhausted_retries_are_as_transient_as_their_last_failure()
    {
        Assert.True(new RetryLimitExceededException(11, PostgresErrorCodes.SerializationFailure, Server(PostgresErrorCodes.SerializationFailure)).IsTransient);
        Assert.True(new RetryLimitExceededException(11, PostgresErrorCodes.LockNotAvailable, new LockNotAvailableException()).IsTransient);
        Assert.True(new RetryLimitExceededException(11, null, new IOException("connection reset")).IsTransient);
        Assert.False(new RetryLimitExceededException(11, PostgresErrorCodes.UniqueViolation, Server(PostgresErrorCodes.UniqueViolation)).IsTransient);
    }

    [Fact]
    public void The_user_sentence_is_kept_apart_from_the_developer_message()
    {
        var e = new LockNotAvailableException("55P03 lock_not_available on FOR UPDATE NOWAIT", null);
        Assert.Equal(LockNotAvailableException.RowMessage, e.UserMessage);
        Assert.Contains("55P03", e.Message, StringComparison.Ordinal);

        var advisory = new LockNotAvailableException("advisory lock 42 not granted within 10 ms", LockNotAvailableException.AdvisoryMessage, null);
        Assert.Equal(LockNotAvailableException.AdvisoryMessage, advisory.UserMessage);
        Assert.Throws<ArgumentException>(() => new LockNotAvailableException("m", "", null));
    }
}
