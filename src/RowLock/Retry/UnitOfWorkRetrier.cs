using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Polly;

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
        retry.ShouldHandle = args => args.Outcome.Exception is CommitOutcomeUnknownException ? new ValueTask<bool>(false) : decide(args);
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
        var run = new UnitOfWorkRun { OperationName = operationName };
        // The operation name is Polly's operation key, so Polly's own telemetry carries it too.
        var context = ResilienceContextPool.Shared.Get(operationName, cancellationToken);
        context.Properties.Set(UnitOfWorkRun.Key, run);
        try
        {
            // ExecuteOutcomeAsync with object, the retry strategy's own result type: Polly then calls the strategy directly,
            // without the wrapping and converting async layers ExecuteAsync<T> adds, and the callback turns exceptions into
            // outcomes itself, as ExecuteAsync does. ThrowIfException rethrows the attempt's exception with its stack trace.
            var result = await _pipeline.ExecuteOutcomeAsync(
                static async (_, s) =>
                {
                    var scope = new AttemptScope();
                    Current.Value = scope;
                    try
                    {
                        return Outcome.FromResult<object?>(await s.Attempt(s.State, s.Token).ConfigureAwait(false));
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
                (Attempt: attempt, State: state, Token: cancellationToken)).ConfigureAwait(false);
            result.ThrowIfException();
            activity?.SetTag("rowlock.attempts", run.Attempts);
            outcome = "committed";
            return (T)result.Result!;
        }
        catch (Exception e)
        {
            failure = e;
            activity?.SetTag("rowlock.attempts", run.Attempts);
            activity?.SetStatus(ActivityStatusCode.Error, e.GetType().Name);
            outcome = e switch
            {
                OperationCanceledException => "canceled",
                CommitOutcomeUnknownException => "unknown",
                _ => "failed",
            };
            if (e is OperationCanceledException || !run.LastOutcomeRetryable)
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

    /// <summary>One attempt of a unit of work, as the code running in it sees it (see <see cref="CurrentAttempt"/>).</summary>
    internal sealed class AttemptScope
    {
        public volatile bool Running = true;

        /// <summary>The attempt's deferred writes, once its transaction has begun; bound to this attempt, never to the
        /// transaction object (Npgsql hands the same object to the next transaction on the connection).</summary>
        public DeferredWrites? Writes;
    }
}
