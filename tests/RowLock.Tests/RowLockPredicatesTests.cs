using System.Net.Sockets;
using Npgsql;

namespace RowLock.Tests;

/// <summary>The classification is a pure function of the exception; server-made errors are covered by the runner tests.</summary>
public sealed class RowLockPredicatesTests
{
    /// <summary>25P03 idle_in_transaction_session_timeout; Npgsql has no constant for it.</summary>
    private const string IdleInTransactionSessionTimeout = "25P03";

    private static PostgresException Pg(string sqlState) => new("message", "ERROR", "ERROR", sqlState);

    private static PostgresException Fatal(string sqlState, string severity = "FATAL") => new("message", severity, severity, sqlState);

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

    [Theory]
    [InlineData(PostgresErrorCodes.AdminShutdown)]
    [InlineData(PostgresErrorCodes.CrashShutdown)]
    [InlineData(PostgresErrorCodes.CannotConnectNow)]
    [InlineData(PostgresErrorCodes.IdleSessionTimeout)]
    [InlineData(IdleInTransactionSessionTimeout)]
    [InlineData(PostgresErrorCodes.DatabaseDropped)]
    [InlineData(PostgresErrorCodes.TooManyConnections)]
    [InlineData(PostgresErrorCodes.InternalError)]
    public void A_session_ending_server_error_is_connection_loss(string sqlState)
    {
        Assert.True(RowLockPredicates.IsConnectionLoss(Fatal(sqlState)));
        Assert.True(RowLockPredicates.IsRetryable(new InvalidOperationException("wrapped", Fatal(sqlState))));
    }

    [Fact]
    public void The_session_ending_codes_are_connection_loss_whatever_their_severity_and_any_PANIC_is()
    {
        Assert.True(RowLockPredicates.IsConnectionLoss(Pg(PostgresErrorCodes.IdleSessionTimeout)));
        Assert.True(RowLockPredicates.IsConnectionLoss(Pg(IdleInTransactionSessionTimeout)));
        Assert.True(RowLockPredicates.IsConnectionLoss(Fatal(PostgresErrorCodes.InternalError, "PANIC")));
    }

    [Fact]
    public void A_connection_the_work_lost_and_swallowed_is_connection_loss_with_or_without_the_break_reason()
    {
        Assert.True(RowLockPredicates.IsConnectionLoss(ConnectionLostBeforeCommitException.Swallowed(null)));
        Assert.True(RowLockPredicates.IsConnectionLoss(ConnectionLostBeforeCommitException.Swallowed(Fatal(PostgresErrorCodes.AdminShutdown))));
        Assert.True(ConnectionLostBeforeCommitException.Swallowed(null).IsTransient);
        Assert.Equal(PostgresErrorCodes.AdminShutdown, RowLockPredicates.FindSqlState(ConnectionLostBeforeCommitException.Swallowed(Fatal(PostgresErrorCodes.AdminShutdown))));
    }

    [Fact]
    public void A_connection_that_could_not_be_opened_or_broke_during_the_work_is_connection_loss()
    {
        var noHost = new NpgsqlException("No suitable host was found.");
        Assert.False(RowLockPredicates.IsConnectionLoss(noHost)); // Npgsql's own shape: not transient by itself
        Assert.True(RowLockPredicates.IsConnectionLoss(ConnectionLostBeforeCommitException.CannotOpen(noHost)));
        var timeout = new NpgsqlException("Exception while reading from stream", new TimeoutException("Timeout during reading attempt"));
        Assert.True(RowLockPredicates.IsConnectionLoss(ConnectionLostBeforeCommitException.BrokeDuringWork(timeout)));
        Assert.Contains("No suitable host was found.", ConnectionLostBeforeCommitException.CannotOpen(noHost).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(PostgresErrorCodes.InvalidPassword)]
    [InlineData(PostgresErrorCodes.InvalidAuthorizationSpecification)]
    [InlineData(PostgresErrorCodes.InvalidCatalogName)]
    public void A_connection_refused_for_its_configuration_is_not_retried(string sqlState) =>
        Assert.False(RowLockPredicates.IsRetryable(Fatal(sqlState)));

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
