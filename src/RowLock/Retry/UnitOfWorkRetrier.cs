using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Polly;
using Polly.Retry;

namespace RowLock.Internal;

/// <summary>
/// The retry loop every RowLock unit-of-work runner shares (<see cref="TransactionRunner"/> and the EF Core package's
/// runner): the nesting guard, one Polly pipeline built from a snapshot of the options with RowLock's telemetry
/// listener, the activity per run, and the exhaustion verdict. What one attempt does is the caller's.
/// </summary>
internal sealed class UnitOfWorkRetrier
{
    /// <summary>
    /// The attempt running in this async flow: units of work cannot nest, across runner kinds. A flag that the attempt
    /// clears, not the mere presence of a value: timers and tasks created inside a work capture this flow and may run
    /// units of work of their own once that work is over.
    /// </summary>
    private static readonly AsyncLocal<AttemptScope?> Current = new();

    /// <summary>
    /// The attempt whose work this code runs in (or ran in: a task the work started and did not await still sees its
    /// attempt, whose <see cref="AttemptScope.Running"/> is then false), or null outside any unit of work.
    /// </summary>
    public static AttemptScope? CurrentAttempt => Current.Value;

    private readonly ResiliencePipeline _pipeline;

    /// <summary>The retry strategy's predicate, as Polly calls it (with RowLock's veto on unknown commit outcomes).</summary>
    private readonly Func<RetryPredicateArguments<object>, ValueTask<bool>> _shouldHandle;

    /// <summary>The predicate is RowLock's own, which looks only at exceptions: a first attempt that returned is final.</summary>
    private readonly bool _resultsNeverRetried;

    public UnitOfWorkRetrier(TransactionRunnerOptions options, ILogger? logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Retry, "options.Retry");
        ArgumentNullException.ThrowIfNull(options.TimeProvider, "options.TimeProvider");
        Options = options.Snapshot();
        Logger = logger ?? NullLogger.Instance;

        // Whatever ShouldHandle the user sets, a COMMIT whose outcome is unknown is never retried: a retry could apply
        // the unit of work twice. This veto is the one decision a user's predicate cannot override.
        var retry = Options.Retry.Snapshot();
        var decide = retry.ShouldHandle;
        _resultsNeverRetried = retry.HandlesOnlyExceptions;
        retry.ShouldHandle = _shouldHandle = args => args.Outcome.Exception is CommitOutcomeUnknownException ? new ValueTask<bool>(false) : decide(args);
        _pipeline = new ResiliencePipelineBuilder
        {
            TimeProvider = Options.TimeProvider,
            TelemetryListener = new RunnerTelemetryListener(Logger),
        }
            .AddRowLockRetry(retry)
            .Build();
    }

    /// <summary>The snapshot taken at construction; never handed out (hand out <c>Options.Snapshot()</c>).</summary>
    public TransactionRunnerOptions Options { get; }

    public ILogger Logger { get; }

    /// <summary>
    /// Runs <c>attempt</c> under the retry policy; exhaustion becomes <see cref="RetryLimitExceededException"/>.
    /// <c>operationName</c> (or null) tags the activity, the metrics and a log scope.
    /// </summary>
    public async Task<T> RunAsync<TState, T>(Func<TState, CancellationToken, Task<T>> attempt, TState state, string? operationName, CancellationToken cancellationToken)
    {
        RefuseNesting();

        var start = Stopwatch.GetTimestamp();
        var outcome = "failed";
        Exception? failure = null;
        using var activity = RowLockTelemetry.ActivitySource.StartActivity("RowLock.UnitOfWork");
        activity?.SetTag("db.system.name", "postgresql");
        if (operationName is not null && activity is not null)
        {
            activity.SetTag(RowLockHistograms.OperationTag, operationName);
            activity.DisplayName = "RowLock.UnitOfWork " + operationName;
        }

        using var scope = BeginScope(operationName);
        UnitOfWorkRun? run = null;
        // The operation name is Polly's operation key, so Polly's own telemetry carries it too.
        var context = ResilienceContextPool.Shared.Get(operationName, cancellationToken);
        try
        {
            // The first attempt runs here, without Polly: most units of work commit on their first attempt, and Polly's
            // layers (an async state machine each, the outcome boxed to object) are then pure cost. An outcome the retry
            // strategy would handle (any failure; a result only under a predicate of the user's) is handed to Polly as its
            // first attempt's outcome, so from there on Polly decides exactly as if it had run that attempt itself (delays,
            // attempt numbers, OnRetry, telemetry). One difference: OnRetryArguments.Duration of that first retry is zero.
            cancellationToken.ThrowIfCancellationRequested();
            Outcome<object?> first;
            var attemptScope = new AttemptScope();
            Current.Value = attemptScope;
            try
            {
                var value = await attempt(state, cancellationToken).ConfigureAwait(false);
                if (_resultsNeverRetried)
                {
                    activity?.SetTag("rowlock.attempts", 1);
                    outcome = "committed";
                    return value;
                }

                first = Outcome.FromResult<object?>(value);
            }
            catch (Exception e)
            {
                first = Outcome.FromException<object?>(e);
            }
            finally
            {
                attemptScope.Running = false;
            }

            run = new UnitOfWorkRun { OperationName = operationName };
            var result = await RetryAsync(first, run, attempt, state, context, cancellationToken).ConfigureAwait(false);
            activity?.SetTag("rowlock.attempts", run.Attempts);
            outcome = "committed";
            return result;
        }
        catch (Exception e)
        {
            failure = e;
            activity?.SetTag("rowlock.attempts", run is { Attempts: > 0 } ? run.Attempts : 1);
            activity?.SetStatus(ActivityStatusCode.Error, e.GetType().Name);
            outcome = e switch
            {
                OperationCanceledException => "canceled",
                CommitOutcomeUnknownException => "unknown",
                _ => "failed",
            };
            if (e is OperationCanceledException || run is not { LastOutcomeRetryable: true })
            {
                throw;
            }

            // Polly judged the last failure retryable and still stopped: the caller cancelled, or no attempt was left.
            if (cancellationToken.IsCancellationRequested)
            {
                outcome = "canceled";
                cancellationToken.ThrowIfCancellationRequested();
            }

            outcome = "exhausted";
            var sqlState = RowLockPredicates.FindSqlState(e);
            RunnerLog.RetriesExhausted(Logger, run.Attempts, sqlState ?? RowLockPredicates.ConnectionLostState, e);

            throw new RetryLimitExceededException(run.Attempts, sqlState, e);
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
            RowLockHistograms.RecordUnitOfWork(start, outcome, operationName, failure);
        }
    }

    /// <summary>
    /// The rest of a run whose first attempt ended in an outcome the retry strategy may handle (a failure, or a result
    /// under a predicate of the user's): Polly takes that outcome as its first attempt's, asks the predicate about it once,
    /// and runs the retries. Kept apart from <see cref="RunAsync"/>, so that a run that commits on its first attempt carries
    /// none of this in its state machine. Throws the final failure as it is.
    /// </summary>
    private async Task<T> RetryAsync<TState, T>(Outcome<object?> first, UnitOfWorkRun run, Func<TState, CancellationToken, Task<T>> attempt, TState state,
        ResilienceContext context, CancellationToken cancellationToken)
    {
        context.Properties.Set(UnitOfWorkRun.Key, run);

        // ExecuteOutcomeAsync with object, the retry strategy's own result type: Polly then calls the strategy directly,
        // without the wrapping and converting async layers ExecuteAsync<T> adds, and the callback turns exceptions into
        // outcomes itself, as ExecuteAsync does. ThrowIfException rethrows the attempt's exception with its stack trace.
        var replay = new Replay<TState, T>(first, attempt, state, cancellationToken);
        var result = await _pipeline.ExecuteOutcomeAsync(
            static async (_, r) =>
            {
                if (r.TakeFirst() is { } earlier)
                {
                    return earlier;
                }

                var scope = new AttemptScope();
                Current.Value = scope;
                try
                {
                    return Outcome.FromResult<object?>(await r.Attempt(r.State, r.Token).ConfigureAwait(false));
                }
                catch (Exception e)
                {
                    return Outcome.FromException<object?>(e);
                }
                finally
                {
                    scope.Running = false;
                }
            },
            context,
            replay).ConfigureAwait(false);
        if (!replay.FirstTaken)
        {
            // Polly checks the caller's token before it runs anything: cancelled while the first attempt ran, it ended the
            // run without looking at that attempt's outcome. Decide as Polly would have had it run the attempt itself: the
            // outcome stands unless the strategy handles it, and then the run ends in the cancellation (Polly checks the
            // token before its backoff). A COMMIT whose outcome is unknown is never turned into a cancellation.
            run.Attempts = 1;
            run.LastOutcomeRetryable = await _shouldHandle(new RetryPredicateArguments<object>(context, first!, 0)).ConfigureAwait(false);
            if (!run.LastOutcomeRetryable)
            {
                result = first;
            }
        }

        result.ThrowIfException();
        return (T)result.Result!;
    }

    /// <summary>
    /// A log scope carrying the operation name, so every line the unit of work logs (RowLock's and the work's own, on
    /// loggers that include scopes) can be grouped by it. Guarded: a failing logger never fails a unit of work.
    /// </summary>
    private IDisposable? BeginScope(string? operationName)
    {
        if (operationName is null)
        {
            return null;
        }

        try
        {
            return Logger.BeginScope(new OperationScope(operationName)) is { } scope ? new GuardedScope(scope) : null;
        }
        catch (Exception)
        {
            return null;
        }
    }

    private static void RefuseNesting()
    {
        if (Current.Value is { Running: true })
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

    /// <summary>
    /// Polly's view of a run whose first attempt already ran: the first callback returns that attempt's outcome, the
    /// next ones run attempts. Allocated only when the first attempt did not end the run.
    /// </summary>
    private sealed class Replay<TState, T>(Outcome<object?> first, Func<TState, CancellationToken, Task<T>> attempt, TState state, CancellationToken token)
    {
        private readonly Outcome<object?> _first = first;

        public Func<TState, CancellationToken, Task<T>> Attempt { get; } = attempt;

        public TState State { get; } = state;

        public CancellationToken Token { get; } = token;

        /// <summary>Did Polly ask for the first attempt's outcome (it does not when the caller's token was cancelled)?</summary>
        public bool FirstTaken { get; private set; }

        public Outcome<object?>? TakeFirst()
        {
            if (FirstTaken)
            {
                return null;
            }

            FirstTaken = true;
            return _first;
        }
    }

    /// <summary>One attempt of a unit of work, as the code running in it sees it (see <see cref="CurrentAttempt"/>).</summary>
    /// <remarks>It is also the attempt's queue of deferred writes, once its transaction has begun: bound to this attempt,
    /// never to the transaction object (Npgsql hands the same object to the next transaction on the connection).</remarks>
    internal sealed class AttemptScope : DeferredWrites
    {
        public volatile bool Running = true;
    }
}
