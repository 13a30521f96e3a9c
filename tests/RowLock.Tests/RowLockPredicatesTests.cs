using System.Net.Sockets;
using Npgsql;

namespace RowLock.Tests;

/// <summary>The classification is a pure function of the exception; server-made errors are covered by the runner tests.</summary>
public sealed class RowLockPredicatesTests
{
    private static PostgresException Pg(string sqlState) => new("message", "ERROR", "ERROR", sqlState);

    [Fact]
    public void Serialization_failures_and_deadlocks_are_retryable_through_wrappers()
    {
        Assert.True(RowLockPredicates.IsRetryable(Pg(PostgresErrorCodes.SerializationFailure)));
        Assert.True(RowLockPredicates.IsRetryable(new InvalidOperationException("wrapped", Pg(PostgresErrorCodes.DeadlockDetected))));
        Assert.True(RowLockPredicates.IsDeadlock(new AggregateException(Pg(PostgresErrorCodes.DeadlockDetected))));
        Assert.True(RowLockPredicates.IsSerializationFailure(new Exception("a", new Exception("b", Pg(PostgresErrorCodes.SerializationFailure)))));
    }

    [Fact]
    public void Lock_not_available_is_retryable_only_when_asked()
    {
        Assert.False(RowLockPredicates.IsRetryable(Pg(PostgresErrorCodes.LockNotAvailable)));
        Assert.True(RowLockPredicates.IsRetryable(Pg(PostgresErrorCodes.LockNotAvailable), includeLockNotAvailable: true));
        Assert.True(RowLockPredicates.IsLockNotAvailable(new LockNotAvailableException()));
        Assert.False(new RowLockRetryStrategyOptions().ShouldRetry(new LockNotAvailableException()));
        Assert.True(new RowLockRetryStrategyOptions { RetryOnLockNotAvailable = true }.ShouldRetry(new LockNotAvailableException()));
    }

    [Theory]
    [InlineData(PostgresErrorCodes.UniqueViolation)]
    [InlineData(PostgresErrorCodes.QueryCanceled)]
    [InlineData(PostgresErrorCodes.InFailedSqlTransaction)]
    [InlineData(PostgresErrorCodes.SyntaxError)]
    public void Other_server_errors_are_not_retryable(string sqlState) =>
        Assert.False(RowLockPredicates.IsRetryable(Pg(sqlState)));

    [Fact]
    public void Connection_loss_is_retryable_but_an_unknown_commit_outcome_never_is()
    {
        Assert.True(RowLockPredicates.IsConnectionLoss(new NpgsqlException("broken", new IOException("reset"))));
        Assert.True(RowLockPredicates.IsConnectionLoss(new NpgsqlException("refused", new SocketException((int)SocketError.ConnectionRefused))));
        Assert.True(RowLockPredicates.IsConnectionLoss(Pg(PostgresErrorCodes.AdminShutdown)));
        Assert.True(RowLockPredicates.IsConnectionLoss(Pg(PostgresErrorCodes.CannotConnectNow)));
        Assert.True(RowLockPredicates.IsConnectionLoss(Pg("08006")));
        Assert.False(RowLockPredicates.IsRetryable(new CommitOutcomeUnknownException(new NpgsqlException("broken", new IOException()))));
        Assert.False(new RowLockRetryStrategyOptions { RetryOnConnectionLoss = false }.ShouldRetry(new NpgsqlException("x", new IOException())));
    }

    [Fact]
    public void Cancellation_and_exhausted_retries_are_never_retried()
    {
        Assert.False(RowLockPredicates.IsRetryable(new OperationCanceledException()));
        Assert.False(RowLockPredicates.IsRetryable(new RetryLimitExceededException(3, PostgresErrorCodes.SerializationFailure, Pg(PostgresErrorCodes.SerializationFailure))));
        Assert.Null(RowLockPredicates.FindSqlState(new InvalidOperationException()));
        Assert.Equal(PostgresErrorCodes.UniqueViolation, RowLockPredicates.FindSqlState(new Exception("x", Pg(PostgresErrorCodes.UniqueViolation))));
    }

    [Fact]
    public void Defaults_are_exponential_with_jitter_and_bounded()
    {
        var options = new RowLockRetryStrategyOptions();
        Assert.Equal(Polly.DelayBackoffType.Exponential, options.BackoffType);
        Assert.True(options.UseJitter);
        Assert.Equal(TimeSpan.FromMilliseconds(10), options.Delay);
        Assert.Equal(TimeSpan.FromSeconds(1), options.MaxDelay);
        Assert.Equal(10, options.MaxRetryAttempts);
    }
}
