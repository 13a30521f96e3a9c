using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace RowLock;

/// <summary>
/// The names RowLock publishes telemetry under, for OpenTelemetry: <c>AddMeter(RowLockTelemetry.MeterName)</c> and
/// <c>AddSource(RowLockTelemetry.ActivitySourceName)</c>.
/// </summary>
public static class RowLockTelemetry
{
    /// <summary>The name of RowLock's <see cref="Meter"/> and <see cref="System.Diagnostics.ActivitySource"/>: <c>RowLock</c>.</summary>
    public const string MeterName = "RowLock";

    /// <summary>The name of RowLock's activity source: <c>RowLock</c>.</summary>
    public const string ActivitySourceName = "RowLock";

    internal static readonly ActivitySource ActivitySource = new(ActivitySourceName);

    internal static readonly Meter Meter = new(MeterName);

    /// <summary><c>rowlock.unit_of_work.attempts</c>: every run of a unit of work, first runs and retries.</summary>
    internal static readonly Counter<long> Attempts = Meter.CreateCounter<long>("rowlock.unit_of_work.attempts", "{attempt}", "Runs of a unit of work, first runs and retries.");

    /// <summary><c>rowlock.unit_of_work.retries</c>: retries, tagged with <c>db.response.status_code</c> (the SQLSTATE).</summary>
    internal static readonly Counter<long> Retries = Meter.CreateCounter<long>("rowlock.unit_of_work.retries", "{retry}", "Retries of a unit of work, by SQLSTATE.");

    /// <summary><c>rowlock.unit_of_work.exhausted</c>: units of work that ran out of attempts.</summary>
    internal static readonly Counter<long> Exhausted = Meter.CreateCounter<long>("rowlock.unit_of_work.exhausted", "{unit}", "Units of work that ran out of retry attempts.");

    /// <summary><c>rowlock.lock.not_available</c>: NOWAIT and timed lock attempts that failed, tagged <c>rowlock.lock.kind</c> = row / advisory.</summary>
    internal static readonly Counter<long> LockNotAvailable = Meter.CreateCounter<long>("rowlock.lock.not_available", "{lock}", "Locks not available (NOWAIT or timeout).");

    /// <summary>Counts a NOWAIT or timed lock that was not granted; <paramref name="kind"/> is <c>row</c> or <c>advisory</c>.</summary>
    internal static void CountLockNotAvailable(string kind) =>
        LockNotAvailable.Add(1, new KeyValuePair<string, object?>("rowlock.lock.kind", kind));
}
