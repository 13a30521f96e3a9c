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

    /// <summary><c>db.system.name</c>, the OpenTelemetry attribute naming the database system (as Npgsql 10 tags it).</summary>
    internal const string DbSystemTag = "db.system.name";

    /// <summary><c>db.response.status_code</c>: the SQLSTATE of a server error.</summary>
    internal const string StatusCodeTag = "db.response.status_code";

    /// <summary><c>error.type</c>: the SQLSTATE when the server answered, else the exception's full type name (a lost connection).</summary>
    internal const string ErrorTypeTag = "error.type";

    internal static readonly KeyValuePair<string, object?> DbSystem = new(DbSystemTag, "postgresql");

    /// <summary>
    /// <c>rowlock.unit_of_work.retries</c>: retries, tagged <c>db.system.name</c>, <c>error.type</c> and, when the server
    /// answered, <c>db.response.status_code</c> (the SQLSTATE). Not derivable from the duration histogram: a unit of work
    /// records one duration however many times it ran.
    /// </summary>
    internal static readonly Counter<long> Retries = Meter.CreateCounter<long>("rowlock.unit_of_work.retries", "{retry}", "Retries of a unit of work, by SQLSTATE.");

    /// <summary>
    /// <c>rowlock.lock.not_available</c>: NOWAIT and timed lock attempts that failed, tagged <c>rowlock.lock.kind</c> = row / advisory.
    /// Stays beside the wait histogram's <c>not_available</c> outcome because it also counts the conflicts that have no
    /// timed statement of their own (a row of an EF Core query found locked while reading, a try-lock returning false).
    /// </summary>
    internal static readonly Counter<long> LockNotAvailable = Meter.CreateCounter<long>("rowlock.lock.not_available", "{lock}", "Locks not available (NOWAIT or timeout).");

    /// <summary>
    /// <c>rowlock.lock.wait.long</c>: lock waits still going on when they passed the warning threshold, tagged
    /// <c>rowlock.lock.kind</c>. The wait histogram only records a wait once it ends; this counts it while it lasts.
    /// </summary>
    internal static readonly Counter<long> LongLockWaits = Meter.CreateCounter<long>("rowlock.lock.wait.long", "{wait}", "Lock waits that passed the warning threshold while still waiting.");

    /// <summary>Counts a NOWAIT or timed lock that was not granted; <paramref name="kind"/> is <c>row</c> or <c>advisory</c>.</summary>
    internal static void CountLockNotAvailable(string kind) =>
        LockNotAvailable.Add(1, new KeyValuePair<string, object?>("rowlock.lock.kind", kind), DbSystem);

    /// <summary>The OpenTelemetry error tags of a failure: <c>db.response.status_code</c> (when there is a SQLSTATE) and <c>error.type</c>.</summary>
    internal static void AddErrorTags(ref TagList tags, Exception error)
    {
        if (RowLockPredicates.FindSqlState(error) is { } sqlState)
        {
            tags.Add(StatusCodeTag, sqlState);
            tags.Add(ErrorTypeTag, sqlState);
        }
        else
        {
            tags.Add(ErrorTypeTag, (Innermost(error)).GetType().FullName);
        }
    }

    /// <summary>The exception that says what failed: RowLock's and Npgsql's wrappers name the transport error inside.</summary>
    private static Exception Innermost(Exception error)
    {
        var current = error;
        while (current.InnerException is { } inner && current is not System.IO.IOException and not System.Net.Sockets.SocketException and not TimeoutException)
        {
            current = inner;
        }

        return current;
    }
}
