using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Polly.Retry;
using Polly.Telemetry;

namespace RowLock.Internal;

/// <summary>
/// Receives the runner's retry events from Polly (<c>ResiliencePipelineBuilder.TelemetryListener</c>) and turns them
/// into RowLock's logs, metrics and trace events. The user's retry options reach Polly untouched, so every option
/// (including ones Polly adds later) keeps working, and the user's <c>OnRetry</c> runs after this.
/// </summary>
internal sealed class RunnerTelemetryListener(ILogger logger) : TelemetryListener
{
    /// <summary>Polly's event names (<c>RetryConstants</c> in Polly.Core).</summary>
    private const string ExecutionAttemptEvent = "ExecutionAttempt";
    private const string OnRetryEvent = "OnRetry";

    public override void Write<TResult, TArgs>(in TelemetryEventArguments<TResult, TArgs> args)
    {
        switch (args.Event.EventName)
        {
            case ExecutionAttemptEvent when args.Arguments is ExecutionAttemptArguments attempt:
                // Attempts are not counted: retries + units of work (the duration histogram's count) give them.
                if (args.Context.Properties.TryGetValue(UnitOfWorkRun.Key, out var run))
                {
                    run.Attempts++;
                    run.LastOutcomeRetryable = attempt.Handled;
                }

                break;
            case OnRetryEvent when args.Arguments is OnRetryArguments<TResult> retry && args.Outcome?.Exception is { } exception:
                var operationName = args.Context.Properties.TryGetValue(UnitOfWorkRun.Key, out var current) ? current.OperationName : null;
                OnRetry(retry.AttemptNumber + 1, retry.RetryDelay, exception, operationName);
                break;
        }
    }

    private void OnRetry(int attempt, TimeSpan delay, Exception exception, string? operationName)
    {
        var connectionLost = RowLockPredicates.IsConnectionLoss(exception);
        var sqlState = RowLockPredicates.FindSqlState(exception) ?? RowLockPredicates.ConnectionLostState;
        RunnerLog.Retrying(logger, attempt, sqlState, delay, connectionLost, exception);
        if (RowLockTelemetry.Retries.Enabled)
        {
            var tags = new TagList { RowLockTelemetry.DbSystem };
            RowLockTelemetry.AddErrorTags(ref tags, exception);
            if (operationName is not null)
            {
                tags.Add(RowLockHistograms.OperationTag, operationName);
            }

            RowLockTelemetry.Retries.Add(1, tags);
        }

        Activity.Current?.AddEvent(new ActivityEvent("rowlock.retry", tags: new ActivityTagsCollection
        {
            ["rowlock.attempt"] = attempt,
            [RowLockTelemetry.StatusCodeTag] = sqlState,
            ["rowlock.retry.delay_ms"] = delay.TotalMilliseconds,
        }));
    }
}
