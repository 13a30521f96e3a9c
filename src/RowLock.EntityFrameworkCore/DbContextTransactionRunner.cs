using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Logging;
using Npgsql;
using RowLock.Internal;

namespace RowLock.EntityFrameworkCore;

/// <summary>
/// The unit of work for EF Core: runs the work with a fresh <typeparamref name="TContext"/> from
/// <see cref="IDbContextFactory{TContext}"/> in a transaction it owns, calls <c>SaveChanges</c> and commits, and re-runs
/// the work whole, with a new context, when it fails with an error that is safe to retry (40001 serialization failure,
/// 40P01 deadlock, connection lost before COMMIT). Same policy, exceptions, logs and metrics as <see cref="TransactionRunner"/>.
/// </summary>
/// <remarks>
/// <para>A new context per attempt is the point: EF's retrying execution strategy replays the work with the entities the
/// failed attempt already changed (a counter decremented twice, efcore.pg#1734). Here each attempt reads the data again.</para>
/// <para>The work may run several times: no side effects outside the transaction that cannot be repeated. It must not
/// commit or roll back the transaction. Contexts the runner uses must not enable EF's own retry (<c>EnableRetryOnFailure</c>).</para>
/// <para>Thread-safe: one runner can serve the whole application.</para>
/// </remarks>
/// <typeparam name="TContext">The context type the factory creates.</typeparam>
public sealed class DbContextTransactionRunner<TContext>
    where TContext : DbContext
{
    private readonly IDbContextFactory<TContext> _contextFactory;
    private readonly UnitOfWorkRetrier _retrier;

    /// <summary>Creates a runner.</summary>
    /// <param name="contextFactory">Creates each attempt's context (e.g. from <c>AddDbContextFactory</c>); it must return a new context per call.</param>
    /// <param name="options">Isolation level and retry policy (the core's options type); null uses the defaults. Copied: later changes have no effect.</param>
    /// <param name="logger">Receives the same events as <see cref="TransactionRunner"/>'s logger (one line per retry, the
    /// exception at Debug, an Error when retries run out or a COMMIT outcome is unknown; ids in <see cref="RowLockEventIds"/>).</param>
    /// <exception cref="ArgumentNullException"><paramref name="contextFactory"/>, <c>options.Retry</c> or <c>options.TimeProvider</c> is null.</exception>
    /// <exception cref="System.ComponentModel.DataAnnotations.ValidationException">The retry options are out of range.</exception>
    public DbContextTransactionRunner(IDbContextFactory<TContext> contextFactory, TransactionRunnerOptions? options = null,
        ILogger<DbContextTransactionRunner<TContext>>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(contextFactory);
        _contextFactory = contextFactory;
        _retrier = new UnitOfWorkRetrier(options ?? new TransactionRunnerOptions(), logger);
    }

    /// <summary>A copy of the options the runner was created with. Changing it has no effect on the runner.</summary>
    public TransactionRunnerOptions Options => _retrier.Options.Snapshot();

    /// <summary>
    /// Runs <paramref name="work"/> with a new context in a new transaction, then calls <c>SaveChangesAsync</c> and commits;
    /// retries it whole, with another new context, on retryable errors.
    /// </summary>
    /// <typeparam name="T">What the work returns.</typeparam>
    /// <param name="work">The unit of work: query (lock with <c>WithRowLock</c>), change entities, return. No need to call SaveChanges.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <returns>What the last, committed run of the work returned.</returns>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error; the last one is the inner exception.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost during COMMIT; not retried.</exception>
    /// <exception cref="InvalidOperationException">Called inside another unit of work or a <c>TransactionScope</c>; the factory
    /// returned a context that already has a transaction or enables EF's retrying strategy; or the work committed or rolled back itself.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<T> RunAsync<T>(Func<TContext, CancellationToken, Task<T>> work, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        return await RunCoreAsync(null, work, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs <paramref name="work"/> as <see cref="RunAsync{T}(Func{TContext, CancellationToken, Task{T}}, CancellationToken)"/> does,
    /// under a name that tags the <c>RowLock.UnitOfWork</c> activity, the runner's metrics (<c>rowlock.operation</c>) and a log scope.
    /// </summary>
    /// <typeparam name="T">What the work returns.</typeparam>
    /// <param name="operationName">A short, low-cardinality name for what the work does (<c>"checkout"</c>); never an id or user input.</param>
    /// <param name="work">The unit of work: query (lock with <c>WithRowLock</c>), change entities, return. No need to call SaveChanges.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <returns>What the last, committed run of the work returned.</returns>
    /// <exception cref="ArgumentException"><paramref name="operationName"/> is null, empty or white space. Nothing ran.</exception>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error; the last one is the inner exception.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost during COMMIT; not retried.</exception>
    /// <exception cref="InvalidOperationException">See <see cref="RunAsync{T}(Func{TContext, CancellationToken, Task{T}}, CancellationToken)"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<T> RunAsync<T>(string operationName, Func<TContext, CancellationToken, Task<T>> work, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(operationName);
        ArgumentNullException.ThrowIfNull(work);
        return await RunCoreAsync(operationName, work, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs <paramref name="work"/>, which returns nothing, under a name (see <see cref="RunAsync{T}(string, Func{TContext, CancellationToken, Task{T}}, CancellationToken)"/>).</summary>
    /// <param name="operationName">A short, low-cardinality name for what the work does; never an id or user input.</param>
    /// <param name="work">The unit of work.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <exception cref="ArgumentException"><paramref name="operationName"/> is null, empty or white space. Nothing ran.</exception>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost during COMMIT; not retried.</exception>
    /// <exception cref="InvalidOperationException">See <see cref="RunAsync{T}(Func{TContext, CancellationToken, Task{T}}, CancellationToken)"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public Task RunAsync(string operationName, Func<TContext, CancellationToken, Task> work, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(operationName);
        ArgumentNullException.ThrowIfNull(work);
        return RunCoreAsync<bool>(operationName, async (db, ct) =>
        {
            await work(db, ct).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    private Task<T> RunCoreAsync<T>(string? operationName, Func<TContext, CancellationToken, Task<T>> work, CancellationToken cancellationToken) =>
        _retrier.RunAsync(
            static (s, token) => s.Runner.AttemptAsync(s.Work, s.Attempts, token),
            (Runner: this, Work: work, Attempts: new Attempts()),
            operationName,
            cancellationToken);

    /// <summary>Runs <paramref name="work"/> as <see cref="RunAsync{T}(Func{TContext, CancellationToken, Task{T}}, CancellationToken)"/> does, for work that returns nothing.</summary>
    /// <param name="work">The unit of work.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost during COMMIT; not retried.</exception>
    /// <exception cref="InvalidOperationException">See <see cref="RunAsync{T}(Func{TContext, CancellationToken, Task{T}}, CancellationToken)"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public Task RunAsync(Func<TContext, CancellationToken, Task> work, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        return RunAsync<bool>(async (db, ct) =>
        {
            await work(db, ct).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    /// <summary>
    /// One attempt: a fresh context, its transaction begun at the configured isolation level, then the core's attempt
    /// protocol on that transaction (savepoint marker sent with the first query, work + SaveChanges, the checked COMMIT that tells rolled back from unknown).
    /// </summary>
    private async Task<T> AttemptAsync<T>(Func<TContext, CancellationToken, Task<T>> work, Attempts attempts, CancellationToken cancellationToken)
    {
        var db = await _contextFactory.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using (db.ConfigureAwait(false))
        {
            RefuseUnsuitable(db, attempts);
            IDbContextTransaction transaction;
            try
            {
                transaction = await db.Database.BeginTransactionAsync(_retrier.Options.IsolationLevel, cancellationToken).ConfigureAwait(false);
            }
            catch (NpgsqlException e) when (UnitOfWorkAttempt.IsOpenFailure(e, cancellationToken))
            {
                throw ConnectionLostBeforeCommitException.CannotOpen(e);
            }

            await using (transaction.ConfigureAwait(false))
            {
                return await UnitOfWorkAttempt.RunInTransactionAsync(
                    (NpgsqlTransaction)transaction.GetDbTransaction(),
                    _retrier.Logger,
                    async ct =>
                    {
                        var result = await work(db, ct).ConfigureAwait(false);
                        await db.SaveChangesAsync(ct).ConfigureAwait(false);
                        if (!ReferenceEquals(db.Database.CurrentTransaction, transaction))
                        {
                            throw new InvalidOperationException(
                                "The work committed, rolled back or replaced the runner's transaction. The runner owns it: return from the work to commit, throw to roll back.");
                        }

                        return result;
                    },
                    cancellationToken,
                    _retrier.Options.VerifyTransactionOwnership).ConfigureAwait(false);
            }
        }
    }

    private static void RefuseUnsuitable(TContext db, Attempts attempts)
    {
        if (ReferenceEquals(attempts.LastContext, db))
        {
            throw new InvalidOperationException(
                "The context factory returned the same context for two attempts. A retry must start from a fresh context, or it replays the failed attempt's tracked changes: return a new context per call.");
        }

        attempts.LastContext = db;
        if (db.Database.CurrentTransaction is not null)
        {
            throw new InvalidOperationException(
                "The context factory returned a context that already has a transaction. The runner must own the transaction it retries: give it a factory that creates a new context per call.");
        }

        if (db.Database.CreateExecutionStrategy().RetriesOnFailure)
        {
            throw new InvalidOperationException(
                "The context enables EF's retrying execution strategy (EnableRetryOnFailure), which refuses user transactions and would retry inside the runner's retries. Use a context without it for units of work.");
        }
    }

    private sealed class Attempts
    {
        public DbContext? LastContext;
    }
}
