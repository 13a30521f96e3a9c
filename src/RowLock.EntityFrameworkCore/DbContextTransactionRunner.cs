using System.Data;
using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Polly;
using Polly.Retry;
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
    private static readonly AsyncLocal<bool> InsideWork = new();

    private readonly IDbContextFactory<TContext> _contextFactory;
    private readonly TransactionRunnerOptions _options;
    private readonly ILogger _logger;
    private readonly ResiliencePipeline _pipeline;

    /// <summary>Creates a runner.</summary>
    /// <param name="contextFactory">Creates each attempt's context (e.g. from <c>AddDbContextFactory</c>); it must return a new context per call.</param>
    /// <param name="options">Isolation level and retry policy (the core's options type); null uses the defaults.</param>
    /// <param name="logger">Receives a Warning per retry and an Error when retries run out, as <see cref="TransactionRunner"/>'s.</param>
    /// <exception cref="System.ComponentModel.DataAnnotations.ValidationException">The retry options are out of range.</exception>
    public DbContextTransactionRunner(IDbContextFactory<TContext> contextFactory, TransactionRunnerOptions? options = null,
        ILogger<DbContextTransactionRunner<TContext>>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(contextFactory);
        _contextFactory = contextFactory;
        _options = options ?? new TransactionRunnerOptions();
        ArgumentNullException.ThrowIfNull(_options.Retry, "options.Retry");
        ArgumentNullException.ThrowIfNull(_options.TimeProvider, "options.TimeProvider");
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _pipeline = new ResiliencePipelineBuilder { TimeProvider = _options.TimeProvider }
            .AddRowLockRetry(WithTelemetry(_options.Retry))
            .Build();
    }

    /// <summary>The options the runner was created with.</summary>
    public TransactionRunnerOptions Options => _options;

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
        RefuseNesting();

        using var activity = RowLockTelemetry.ActivitySource.StartActivity("RowLock.UnitOfWork");
        activity?.SetTag("db.system.name", "postgresql");
        var attempts = new Attempts();
        try
        {
            var result = await _pipeline.ExecuteAsync(
                static async (state, token) => await state.Runner.AttemptAsync(state.Work, state.Attempts, token).ConfigureAwait(false),
                (Runner: this, Work: work, Attempts: attempts),
                cancellationToken).ConfigureAwait(false);
            activity?.SetTag("rowlock.attempts", attempts.Count);
            return result;
        }
        catch (Exception e)
        {
            activity?.SetTag("rowlock.attempts", attempts.Count);
            activity?.SetStatus(ActivityStatusCode.Error, e.GetType().Name);
            if (e is OperationCanceledException || !await IsExhaustedAsync(e, attempts.Count).ConfigureAwait(false))
            {
                throw;
            }

            var sqlState = RowLockPredicates.FindSqlState(e);
            Log.RetriesExhausted(_logger, attempts.Count, sqlState ?? RowLockPredicates.ConnectionLostState, e);
            RowLockTelemetry.Exhausted.Add(1);
            throw new RetryLimitExceededException(attempts.Count, sqlState, e);
        }
    }

    /// <summary>Runs <paramref name="work"/> as <see cref="RunAsync{T}"/> does, for work that returns nothing.</summary>
    /// <param name="work">The unit of work.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost during COMMIT; not retried.</exception>
    /// <exception cref="InvalidOperationException">See <see cref="RunAsync{T}"/>.</exception>
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

    private static void RefuseNesting()
    {
        if (InsideWork.Value)
        {
            throw new InvalidOperationException(
                "RunAsync was called inside the work of another unit of work. A retry can only restart the outermost transaction, so units of work cannot nest: " +
                "use the context you were given, or run the inner work after the outer unit of work returns.");
        }

        if (System.Transactions.Transaction.Current is not null)
        {
            throw new InvalidOperationException(
                "RunAsync was called inside an ambient System.Transactions transaction (TransactionScope). The runner must own the transaction it retries.");
        }
    }

    private async ValueTask<T> AttemptAsync<T>(Func<TContext, CancellationToken, Task<T>> work, Attempts attempts, CancellationToken cancellationToken)
    {
        attempts.Count++;
        RowLockTelemetry.Attempts.Add(1);
        var db = await _contextFactory.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using (db.ConfigureAwait(false))
        {
            RefuseUnsuitable(db, attempts);
            var transaction = await db.Database.BeginTransactionAsync(_options.IsolationLevel, cancellationToken).ConfigureAwait(false);
            await using (transaction.ConfigureAwait(false))
            {
                T result;
                InsideWork.Value = true;
                try
                {
                    result = await work(db, cancellationToken).ConfigureAwait(false);
                    await db.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    await RollBackQuietlyAsync(transaction).ConfigureAwait(false);
                    throw;
                }
                finally
                {
                    InsideWork.Value = false;
                }

                if (!ReferenceEquals(db.Database.CurrentTransaction, transaction))
                {
                    throw new InvalidOperationException("The work committed, rolled back or replaced the runner's transaction. The runner owns it: return from the work to commit, throw to roll back.");
                }

                await CommitAsync((NpgsqlTransaction)transaction.GetDbTransaction()).ConfigureAwait(false);
                return result;
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

    /// <summary>
    /// COMMIT is never cancelled half-way, and runs in the same round trip as a <c>SELECT 1</c> that fails with 25P02 when
    /// the transaction is aborted (PostgreSQL would silently turn the COMMIT into a ROLLBACK). Losing the connection
    /// during COMMIT means nobody knows the outcome: <see cref="CommitOutcomeUnknownException"/>, never retried.
    /// </summary>
    private async Task CommitAsync(NpgsqlTransaction transaction)
    {
        var batch = new NpgsqlBatch(transaction.Connection, transaction)
        {
            BatchCommands = { new NpgsqlBatchCommand("SELECT 1"), new NpgsqlBatchCommand("COMMIT") },
        };
        await using (batch.ConfigureAwait(false))
        {
            try
            {
                await batch.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InFailedSqlTransaction)
            {
                await transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
                throw;
            }
            catch (Exception e) when (RowLockPredicates.IsConnectionLoss(e) || (e is NpgsqlException and not PostgresException))
            {
                Log.CommitOutcomeUnknown(_logger, e);
                throw new CommitOutcomeUnknownException(e);
            }
        }
    }

    private static async Task RollBackQuietlyAsync(IDbContextTransaction transaction)
    {
        try
        {
            if (transaction.GetDbTransaction().Connection is { State: ConnectionState.Open })
            {
                await transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is DbUpdateException or System.Data.Common.DbException or InvalidOperationException or IOException)
        {
            // The connection is gone or the transaction already ended: the server has rolled back. The original error matters.
        }
    }

    private async ValueTask<bool> IsExhaustedAsync(Exception exception, int attempts)
    {
        if (attempts <= _options.Retry.MaxRetryAttempts)
        {
            return false;
        }

        var context = ResilienceContextPool.Shared.Get(CancellationToken.None);
        try
        {
            return await _options.Retry.ShouldHandle(new RetryPredicateArguments<object>(context, Outcome.FromException<object>(exception), attempts - 1)).ConfigureAwait(false);
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    /// <summary>A copy of the user's options whose OnRetry first logs, counts and traces the retry, as <see cref="TransactionRunner"/> does.</summary>
    private RowLockRetryStrategyOptions WithTelemetry(RowLockRetryStrategyOptions retry)
    {
        var userOnRetry = retry.OnRetry;
        return new RowLockRetryStrategyOptions
        {
            Name = retry.Name,
            MaxRetryAttempts = retry.MaxRetryAttempts,
            Delay = retry.Delay,
            MaxDelay = retry.MaxDelay,
            BackoffType = retry.BackoffType,
            UseJitter = retry.UseJitter,
            DelayGenerator = retry.DelayGenerator,
            Randomizer = retry.Randomizer,
            ShouldHandle = retry.ShouldHandle,
            RetryOnConnectionLoss = retry.RetryOnConnectionLoss,
            RetryOnLockNotAvailable = retry.RetryOnLockNotAvailable,
            OnRetry = async args =>
            {
                var sqlState = RowLockPredicates.FindSqlState(args.Outcome.Exception) ?? RowLockPredicates.ConnectionLostState;
                Log.Retrying(_logger, args.AttemptNumber + 1, sqlState, args.RetryDelay.TotalMilliseconds, args.Outcome.Exception!);
                RowLockTelemetry.Retries.Add(1, new KeyValuePair<string, object?>("db.response.status_code", sqlState));
                Activity.Current?.AddEvent(new ActivityEvent("rowlock.retry", tags: new ActivityTagsCollection
                {
                    ["rowlock.attempt"] = args.AttemptNumber + 1,
                    ["db.response.status_code"] = sqlState,
                    ["rowlock.retry.delay_ms"] = args.RetryDelay.TotalMilliseconds,
                }));
                if (userOnRetry is not null)
                {
                    await userOnRetry(args).ConfigureAwait(false);
                }
            },
        };
    }

    private sealed class Attempts
    {
        public int Count;
        public DbContext? LastContext;
    }
}
