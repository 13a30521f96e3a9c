using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Polly;
using Polly.Retry;
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
/// (send the e-mail after <c>RunAsync</c> returns). It must not commit or roll back the transaction it is given.</para>
/// <para>Thread-safe: one runner can serve the whole application.</para>
/// </remarks>
public sealed class TransactionRunner
{
    private static readonly AsyncLocal<TransactionRunner?> CurrentRunner = new();

    /// <summary>The last server error thrown during the current attempt, even if the work caught it (see <see cref="Unmask"/>).</summary>
    private static readonly AsyncLocal<StrongBox<PostgresException?>?> AttemptErrors = new();

    static TransactionRunner()
    {
        // Runs on the throwing thread, inside the attempt's execution context; a single field check otherwise.
        AppDomain.CurrentDomain.FirstChanceException += (_, e) =>
        {
            if (e.Exception is PostgresException { SqlState: not PostgresErrorCodes.InFailedSqlTransaction } pg && AttemptErrors.Value is { } box)
            {
                box.Value = pg;
            }
        };
    }

    private readonly NpgsqlDataSource _dataSource;
    private readonly TransactionRunnerOptions _options;
    private readonly ILogger _logger;
    private readonly ResiliencePipeline _pipeline;

    /// <summary>Creates a runner.</summary>
    /// <param name="dataSource">Where each attempt's connection comes from.</param>
    /// <param name="options">Isolation level and retry policy; null uses the defaults.</param>
    /// <param name="logger">Receives a Warning per retry and an Error when retries run out.</param>
    /// <exception cref="System.ComponentModel.DataAnnotations.ValidationException">The retry options are out of range.</exception>
    public TransactionRunner(NpgsqlDataSource dataSource, TransactionRunnerOptions? options = null, ILogger<TransactionRunner>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        _dataSource = dataSource;
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

    /// <summary>Runs <paramref name="work"/> in a transaction, committing when it returns and retrying it whole on retryable errors.</summary>
    /// <typeparam name="T">What the work returns.</typeparam>
    /// <param name="work">The unit of work. It gets the transaction (use <c>transaction.Connection</c> for commands) and the token.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <returns>What the last, committed run of the work returned.</returns>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error; the last one is the inner exception.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost during COMMIT; not retried.</exception>
    /// <exception cref="InvalidOperationException">Called inside another unit of work or inside an ambient <c>System.Transactions</c> transaction,
    /// where a retry could not restart the outer transaction; or the work committed or rolled back the runner's transaction itself.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<T> RunAsync<T>(Func<NpgsqlTransaction, CancellationToken, Task<T>> work, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        RefuseNesting();

        using var activity = RowLockTelemetry.ActivitySource.StartActivity("RowLock.UnitOfWork");
        activity?.SetTag("db.system.name", "postgresql");
        var attempts = new AttemptCounter();
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

    /// <summary>Runs <paramref name="work"/> in a transaction, committing when it returns and retrying it whole on retryable errors.</summary>
    /// <param name="work">The unit of work. It gets the transaction (use <c>transaction.Connection</c> for commands) and the token.</param>
    /// <param name="cancellationToken">Cancels the work, a lock wait inside it, and the backoff between attempts.</param>
    /// <exception cref="RetryLimitExceededException">Every attempt failed with a retryable error; the last one is the inner exception.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost during COMMIT; not retried.</exception>
    /// <exception cref="InvalidOperationException">Called inside another unit of work or an ambient <c>System.Transactions</c> transaction.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public Task RunAsync(Func<NpgsqlTransaction, CancellationToken, Task> work, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        return RunAsync<bool>(async (tx, ct) =>
        {
            await work(tx, ct).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    private static void RefuseNesting()
    {
        if (CurrentRunner.Value is not null)
        {
            throw new InvalidOperationException(
                "RunAsync was called inside the work of another RunAsync. A retry can only restart the outermost transaction, so units of work cannot nest: " +
                "do the inner work on the transaction you were given, or run it after the outer unit of work returns.");
        }

        if (System.Transactions.Transaction.Current is not null)
        {
            throw new InvalidOperationException(
                "RunAsync was called inside an ambient System.Transactions transaction (TransactionScope). The runner must own the transaction it retries; " +
                "a retry cannot restart a transaction the caller opened. Call RunAsync outside the TransactionScope.");
        }
    }

    private async ValueTask<T> AttemptAsync<T>(Func<NpgsqlTransaction, CancellationToken, Task<T>> work, AttemptCounter attempts, CancellationToken cancellationToken)
    {
        attempts.Count++;
        RowLockTelemetry.Attempts.Add(1);
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            var transaction = await connection.BeginTransactionAsync(_options.IsolationLevel, cancellationToken).ConfigureAwait(false);
            await using (transaction.ConfigureAwait(false))
            {
                T result;
                var errors = new StrongBox<PostgresException?>();
                CurrentRunner.Value = this;
                AttemptErrors.Value = errors;
                try
                {
                    result = await work(transaction, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    await RollBackQuietlyAsync(transaction).ConfigureAwait(false);
                    Unmask(e, errors.Value);
                    throw;
                }
                finally
                {
                    CurrentRunner.Value = null;
                    AttemptErrors.Value = null;
                }

                if (TransactionGuard.IsCompleted(transaction))
                {
                    throw new InvalidOperationException("The work committed or rolled back the runner's transaction itself. The runner owns it: return from the work to commit, throw to roll back.");
                }

                await CommitAsync(transaction, errors.Value).ConfigureAwait(false);
                return result;
            }
        }
    }

    /// <summary>
    /// COMMIT is never cancelled half-way (that would leave the outcome unknown on purpose). PostgreSQL answers COMMIT in
    /// an aborted transaction with a silent ROLLBACK, so a work that caught an error and returned would look committed;
    /// a <c>SELECT 1</c> in the same round trip fails with 25P02 in that case and COMMIT is never run. A server error during
    /// COMMIT (e.g. 40001 under SERIALIZABLE) means it rolled back and may be retried; losing the connection means nobody knows.
    /// </summary>
    private async Task CommitAsync(NpgsqlTransaction transaction, PostgresException? earlier)
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
                await RollBackQuietlyAsync(transaction).ConfigureAwait(false);
                Unmask(e, earlier);
                throw;
            }
            catch (Exception e) when (RowLockPredicates.IsConnectionLoss(e) || (e is NpgsqlException and not PostgresException))
            {
                Log.CommitOutcomeUnknown(_logger, e);
                throw new CommitOutcomeUnknownException(e);
            }
        }
    }

    /// <summary>
    /// 25P02 ("current transaction is aborted") only says that an earlier statement failed and the work caught that
    /// error and went on. Report (and classify for retry) that earlier error instead of the noise.
    /// </summary>
    private static void Unmask(Exception failure, PostgresException? earlier)
    {
        if (earlier is not null && RowLockPredicates.FindSqlState(failure) == PostgresErrorCodes.InFailedSqlTransaction)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(earlier).Throw();
        }
    }

    private static async Task RollBackQuietlyAsync(NpgsqlTransaction transaction)
    {
        try
        {
            if (transaction.Connection is { State: System.Data.ConnectionState.Open })
            {
                await transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException)
        {
            // The connection is gone or the transaction already ended: the server has rolled back. The original error matters.
        }
    }

    /// <summary>Did the retry give up on a failure it would have retried, had attempts remained?</summary>
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

    /// <summary>A copy of the user's options whose OnRetry first logs, counts and traces the retry.</summary>
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

    private sealed class AttemptCounter
    {
        public int Count;
    }
}
