using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace RowLock.Hosting.Internal;

/// <summary>
/// The leader instruments, on a meter named like RowLock's own (<see cref="RowLockTelemetry.MeterName"/>), so one
/// <c>AddMeter("RowLock")</c> collects them all. Meters and instruments are static, as every .NET library keeps them;
/// nothing else here is process-wide.
/// </summary>
internal static class LeaderTelemetry
{
    public const string NameTag = "rowlock.leader.name";
    public const string ReasonTag = "rowlock.leader.reason";

    private static readonly Meter Meter = new(RowLockTelemetry.MeterName);

    /// <summary><c>rowlock.leader.is_leader</c>: 1 while this process leads the name, 0 otherwise (an up-down counter: +1 on acquire, -1 on loss or resign).</summary>
    private static readonly UpDownCounter<long> IsLeader = Meter.CreateUpDownCounter<long>(
        "rowlock.leader.is_leader", "{leader}", "1 while this process leads the election, by name.");

    private static readonly Counter<long> Changes = Meter.CreateCounter<long>(
        "rowlock.leader.changes", "{change}", "Leadership changes of this process, by name and reason (acquired, lost, resigned).");

    private static readonly Histogram<double> LossDetection = Meter.CreateHistogram<double>(
        "rowlock.leader.loss_detection.duration", "s", "From the last moment the leader's session or lease was confirmed to the moment the loss was noticed.");

    private static readonly Histogram<double> Takeover = Meter.CreateHistogram<double>(
        "rowlock.leader.takeover.duration", "s", "From the previous leader's resignation (or lease end) to this acquisition, by the database clock.");

    public static void Acquired(string name, double? takeoverSeconds)
    {
        var nameTag = new KeyValuePair<string, object?>(NameTag, name);
        IsLeader.Add(1, nameTag);
        Changes.Add(1, nameTag, new KeyValuePair<string, object?>(ReasonTag, "acquired"));
        if (takeoverSeconds is { } seconds && seconds >= 0)
        {
            Takeover.Record(seconds, nameTag);
        }
    }

    public static void Lost(string name, long lastConfirmedTimestamp)
    {
        var nameTag = new KeyValuePair<string, object?>(NameTag, name);
        IsLeader.Add(-1, nameTag);
        Changes.Add(1, nameTag, new KeyValuePair<string, object?>(ReasonTag, "lost"));
        LossDetection.Record(Stopwatch.GetElapsedTime(lastConfirmedTimestamp).TotalSeconds, nameTag);
    }

    public static void Resigned(string name)
    {
        var nameTag = new KeyValuePair<string, object?>(NameTag, name);
        IsLeader.Add(-1, nameTag);
        Changes.Add(1, nameTag, new KeyValuePair<string, object?>(ReasonTag, "resigned"));
    }
}
