using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace RowLock.Internal;

/// <summary>
/// RowLock's duration histograms (seconds, OpenTelemetry style) on the <c>RowLock</c> meter. Callers take a
/// <see cref="Stopwatch.GetTimestamp"/> (no allocation) and record only when the instrument is enabled, so without a
/// listener the hot path costs one timestamp and one bool read.
/// </summary>
internal static class RowLockHistograms
{
    public const string KindTag = "rowlock.lock.kind";
    public const string OutcomeTag = "rowlock.lock.outcome";
    public const string OperationTag = "rowlock.operation";

    /// <summary>
    /// Explicit buckets suited to lock waits and units of work: 1 ms to 10 minutes. OpenTelemetry's default buckets
    /// (and Npgsql's) stop at 10 s, where a lock incident only begins.
    /// </summary>
    internal static readonly InstrumentAdvice<double> DurationAdvice = new()
    {
        HistogramBucketBoundaries = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    };

    /// <summary><c>rowlock.lock.wait.duration</c>: the client-side time of a locking statement, tagged kind (row / advisory) and outcome.</summary>
    public static readonly Histogram<double> LockWait = Create(
        "rowlock.lock.wait.duration", "Time spent taking a row or advisory lock, measured around the locking statement.");

    /// <summary><c>rowlock.lock.hold.duration</c>: how long an <see cref="AdvisoryLockHandle"/> held its lock, tagged mode and scope.</summary>
    public static readonly Histogram<double> LockHold = Create(
        "rowlock.lock.hold.duration", "Time an advisory lock handle held its lock, from acquire to release.");

    /// <summary><c>rowlock.unit_of_work.duration</c>: one <c>RunAsync</c>, every attempt and backoff included, tagged outcome and operation.</summary>
    public static readonly Histogram<double> UnitOfWork = Create(
        "rowlock.unit_of_work.duration", "Duration of a unit of work run by a RowLock runner, retries and backoff included.");

    private static Histogram<double> Create(string name, string description) =>
        RowLockTelemetry.Meter.CreateHistogram(name, "s", description, tags: null, DurationAdvice);

    /// <summary>Records a lock wait that started at <paramref name="start"/>; outcome is <c>acquired</c>, <c>not_available</c> or <c>error</c>.</summary>
    public static void RecordLockWait(long start, string kind, string outcome)
    {
        if (LockWait.Enabled)
        {
            LockWait.Record(
                Stopwatch.GetElapsedTime(start).TotalSeconds,
                new KeyValuePair<string, object?>(KindTag, kind),
                new KeyValuePair<string, object?>(OutcomeTag, outcome),
                RowLockTelemetry.DbSystem);
        }
    }

    /// <summary>Records how long an advisory handle held its lock; scope is <c>session</c> or <c>transaction</c>.</summary>
    public static void RecordLockHold(long start, AdvisoryLockMode mode, bool heldByTransaction)
    {
        if (LockHold.Enabled)
        {
            LockHold.Record(
                Stopwatch.GetElapsedTime(start).TotalSeconds,
                new KeyValuePair<string, object?>(KindTag, "advisory"),
                new KeyValuePair<string, object?>("rowlock.lock.mode", mode == AdvisoryLockMode.Shared ? "shared" : "exclusive"),
                new KeyValuePair<string, object?>("rowlock.lock.scope", heldByTransaction ? "transaction" : "session"));
        }
    }

    /// <summary>
    /// Records one <c>RunAsync</c>; outcome is <c>committed</c>, <c>failed</c>, <c>exhausted</c>, <c>unknown</c> or
    /// <c>canceled</c>; a failure adds <c>error.type</c> and, when there is one, the SQLSTATE in <c>db.response.status_code</c>.
    /// </summary>
    public static void RecordUnitOfWork(long start, string outcome, string? operationName, Exception? failure = null)
    {
        if (!UnitOfWork.Enabled)
        {
            return;
        }

        var tags = new TagList
        {
            new KeyValuePair<string, object?>("rowlock.unit_of_work.outcome", outcome),
            RowLockTelemetry.DbSystem,
        };
        if (operationName is not null)
        {
            tags.Add(OperationTag, operationName);
        }

        if (failure is not null && outcome != "canceled")
        {
            RowLockTelemetry.AddErrorTags(ref tags, failure is RetryLimitExceededException { InnerException: { } last } ? last : failure);
        }

        UnitOfWork.Record(Stopwatch.GetElapsedTime(start).TotalSeconds, tags);
    }

    /// <summary>The outcome tag for a lock statement that threw.</summary>
    public static string FailureOutcome(Exception e) =>
        RowLockPredicates.IsLockNotAvailable(e) ? "not_available" : "error";
}
