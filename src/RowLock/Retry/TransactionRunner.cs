using Microsoft.Extensions.Logging;
using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// Runs a unit of work in a transaction it owns, and re-runs it whole, in a new transaction on a fresh connection,
/// when it fails with an error that is safe to retry (serialization failure, deadlock, connection lost before COMMIT).
/// </summary>
/// <remarks>
/// <para>Each attempt: open a connection from the data source, BEGIN at <see cref="TransactionRunnerOptions.IsolationLevel"/>,
/// run the work, COMMIT. On a retryable error: roll back, return the connection, wait the backoff, run again.</para>
/// <para>The work may run several times, so it must not have side effects outside the transaction that cannot be repeated
/// (send the e-mail after <c>RunAsync</c> returns). It must not commit or roll back the transaction it is given, and it
/// must let database errors on that transaction propagate: after one, PostgreSQL has aborted the transaction.</para>
/// <para>The options are copied when the runner is built; changing them afterwards has no effect. Logs go to the logger
/// given to the constructor, and nowhere else; a failing logger never fails a unit of work.</para>
/// <para>Thread-safe: one runner can serve the whole application.</para>
/// </remarks>
public sealed class TransactionRunner
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly UnitOfWorkRetrier _retrier;

    /// <summary>Creates a runner.</summary>
    /// <param name="dataSource">Where each attempt's connection comes from.</param>
    /// <param name="options">Isolation level and retry policy; null uses the defaults. Copied: later changes have no effect.</param>
    /// <param name="logger">Receives one line per retry (Information; Warning for a lost connection), the retried exception
    /// at Debug, and an Error when retries run out or a COMMIT outcome is unknown (event ids in <see cref="RowLockEventIds"/>).
    /// Null logs nothing. From a factory: <c>loggerFactory.CreateLogger&lt;TransactionRunner&gt;()</c>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/>, <c>options.Retry</c> or <c>options.TimeProvider</c> is null.</exception>
    /// <exception cref="System.ComponentModel.DataAnnotations.ValidationException">The retry options are out of range.</exception>
    public TransactionRunner(NpgsqlDataSource dataSource, TransactionRunnerOptions? options = null, ILogger<TransactionRunner>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        _dataSource = dataSource;
        _retrier = new UnitOfWorkRetrier(options ?? new TransactionRunnerOptions(), logger);
    }

    /// <summary>A copy of the options the runner was created with. Changing it has no effect on the runner.</summary>
    public TransactionRunnerOptions Options => _retrier.Options.Snapshot();

    /// <summary>Runs <paramref name="work"/> in a transaction, committing when it returns and retrying it whole on retryable errors.</summary>
    /// <typeparam name="T">What the work returns.</typeparam>
    /// <param name="work">The unit of work. It gets the transaction (use <c>transaction.Connection</c> for commands) and the token.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <returns>What the last, committed run of the work returned.</returns>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error; the last one is the inner exception.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost while COMMIT was in flight; not retried.</exception>
    /// <exception cref="RowLockException">With <see cref="RowLockException.SqlState"/> 25P02: the work caught a database error on the
    /// runner's transaction and carried on, so the transaction was aborted and rolled back. Not retried.</exception>
    /// <exception cref="InvalidOperationException">Called inside another unit of work or inside an ambient <c>System.Transactions</c> transaction,
    /// where a retry could not restart the outer transaction; or the work committed or rolled back the runner's transaction itself
    /// (what it committed stays committed).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public Task<T> RunAsync<T>(Func<NpgsqlTransaction, CancellationToken, Task<T>> work, CancellationToken cancellationToken = default)
    {
        // Not async, to spare a layer per run; a missing work still comes out as a faulted task, as from an async method.
        return work is null
            ? Task.FromException<T>(new ArgumentNullException(nameof(work)))
            : RunCoreAsync(null, new UnitOfWork<T>(work), cancellationToken);
    }

    /// <summary>
    /// Runs <paramref name="work"/> as <see cref="RunAsync{T}(Func{NpgsqlTransaction, CancellationToken, Task{T}}, CancellationToken)"/>
    /// does, under a name: <paramref name="operationName"/> tags the <c>RowLock.UnitOfWork</c> activity, the runner's
    /// metrics (<c>rowlock.operation</c>) and a log scope around the unit of work, so "which operation retries most" is one query.
    /// </summary>
    /// <typeparam name="T">What the work returns.</typeparam>
    /// <param name="operationName">A short, low-cardinality name for what the work does (<c>"checkout"</c>); never an id or user input.</param>
    /// <param name="work">The unit of work. It gets the transaction (use <c>transaction.Connection</c> for commands) and the token.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <returns>What the last, committed run of the work returned.</returns>
    /// <exception cref="ArgumentException"><paramref name="operationName"/> is null, empty or white space. Nothing ran.</exception>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error; the last one is the inner exception.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost while COMMIT was in flight; not retried.</exception>
    /// <exception cref="RowLockException">With <see cref="RowLockException.SqlState"/> 25P02: the work caught a database error on the
    /// runner's transaction and carried on; not retried.</exception>
    /// <exception cref="InvalidOperationException">Called inside another unit of work or an ambient <c>System.Transactions</c> transaction,
    /// or the work ended the runner's transaction itself.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public Task<T> RunAsync<T>(string operationName, Func<NpgsqlTransaction, CancellationToken, Task<T>> work, CancellationToken cancellationToken = default)
    {
        // Not async, to spare a layer per run; bad arguments still come out as a faulted task, as from an async method.
        try
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(operationName);
            ArgumentNullException.ThrowIfNull(work);
        }
        catch (ArgumentException e)
        {
            return Task.FromException<T>(e);
        }

        return RunCoreAsync(operationName, new UnitOfWork<T>(work), cancellationToken);
    }

    /// <summary>Runs <paramref name="work"/>, which returns nothing, under a name (see <see cref="RunAsync{T}(string, Func{NpgsqlTransaction, CancellationToken, Task{T}}, CancellationToken)"/>).</summary>
    /// <param name="operationName">A short, low-cardinality name for what the work does (<c>"checkout"</c>); never an id or user input.</param>
    /// <param name="work">The unit of work. It gets the transaction (use <c>transaction.Connection</c> for commands) and the token.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <exception cref="ArgumentException"><paramref name="operationName"/> is null, empty or white space. Nothing ran.</exception>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error; the last one is the inner exception.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost while COMMIT was in flight; not retried.</exception>
    /// <exception cref="RowLockException">With <see cref="RowLockException.SqlState"/> 25P02: the work caught a database error and carried on.</exception>
    /// <exception cref="InvalidOperationException">Called inside another unit of work or an ambient transaction, or the work ended the runner's transaction.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public Task RunAsync(string operationName, Func<NpgsqlTransaction, CancellationToken, Task> work, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(operationName);
        ArgumentNullException.ThrowIfNull(work);
        return RunCoreAsync(operationName, new UnitOfWork<bool>(work), cancellationToken);
    }

    private Task<T> RunCoreAsync<T>(string? operationName, UnitOfWork<T> work, CancellationToken cancellationToken) =>
        _retrier.RunAsync(
            static (s, token) => UnitOfWorkAttempt.RunAsync(s.Runner._dataSource, s.Runner._retrier.Options.IsolationLevel, s.Runner._retrier.Logger, s.Work, token, s.Runner._retrier.Options.LockWaitWarningThreshold, s.Runner._retrier.Options.VerifyTransactionOwnership),
            (Runner: this, Work: work),
            operationName,
            cancellationToken);

    /// <summary>Runs <paramref name="work"/> in a transaction, committing when it returns and retrying it whole on retryable errors.</summary>
    /// <param name="work">The unit of work. It gets the transaction (use <c>transaction.Connection</c> for commands) and the token.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error; the last one is the inner exception.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost while COMMIT was in flight; not retried.</exception>
    /// <exception cref="RowLockException">With <see cref="RowLockException.SqlState"/> 25P02: the work caught a database error on the
    /// runner's transaction and carried on; not retried.</exception>
    /// <exception cref="InvalidOperationException">Called inside another unit of work or an ambient <c>System.Transactions</c> transaction,
    /// or the work ended the runner's transaction itself.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public Task RunAsync(Func<NpgsqlTransaction, CancellationToken, Task> work, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        return RunCoreAsync(null, new UnitOfWork<bool>(work), cancellationToken);
    }
}
