using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// Warns while a lock wait is still going on: after <c>threshold</c>, one lock-wait snapshot (on another connection of
/// the data source: the waiting one is busy) tells whether the session still waits, on what and behind whom; if it does,
/// one Warning (<see cref="RowLockEventIds.LockWaitPassedThreshold"/>) names the blocker and what it is doing, and
/// <c>rowlock.lock.wait.long</c> counts it. At most one warning per watch. A wait shorter than the threshold costs a
/// timer created and disposed; the snapshot runs only when the timer fires. A failing snapshot or logger is ignored:
/// diagnostics never fail the caller's work.
/// </summary>
internal sealed class LockWaitWatch : IDisposable
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly int _pid;
    private readonly TimeSpan _threshold;
    private readonly ILogger _logger;
    private readonly string? _kind;
    private readonly ITimer _timer;
    private CancellationTokenSource? _stop;
    private int _checking;
    private int _done;

    private LockWaitWatch(NpgsqlDataSource dataSource, int pid, TimeSpan threshold, ILogger logger, string? kind, TimeProvider time, bool repeat)
    {
        _dataSource = dataSource;
        _pid = pid;
        _threshold = threshold;
        _logger = logger;
        _kind = kind;
        _timer = time.CreateTimer(static state => ((LockWaitWatch)state!).Fire(), this, threshold, repeat ? threshold : Timeout.InfiniteTimeSpan);
    }

    /// <summary>
    /// Watches the session <paramref name="pid"/> (<paramref name="kind"/>: the <c>rowlock.lock.kind</c> tag, or null to take it from what the session waits for); null (nothing to dispose) when the threshold is off (zero, negative or infinite).
    /// <paramref name="repeat"/> checks again every threshold until a wait is found (a unit of work may wait later on);
    /// otherwise the watch checks once (the caller is waiting from the start).
    /// </summary>
    /// <remarks>Nothing is started when nobody would hear the warning (the logger does not log Warning and nothing listens to
    /// <c>rowlock.lock.wait.long</c>): then a watch is pure cost, a timer per call.</remarks>
    public static LockWaitWatch? Start(NpgsqlDataSource dataSource, int pid, TimeSpan threshold, ILogger logger, string? kind, TimeProvider? time = null, bool repeat = false) =>
        threshold <= TimeSpan.Zero || threshold == Timeout.InfiniteTimeSpan || pid == 0 || !Heard(logger)
            ? null
            : new LockWaitWatch(dataSource, pid, threshold, logger, kind, time ?? TimeProvider.System, repeat);

    private static bool Heard(ILogger logger)
    {
        if (RowLockTelemetry.LongLockWaits.Enabled)
        {
            return true;
        }

        try
        {
            return logger.IsEnabled(LogLevel.Warning);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return false; // a failing logger never fails the caller's work
        }
    }

    public void Dispose()
    {
        Volatile.Write(ref _done, 1);
        _timer.Dispose();
        Volatile.Read(ref _stop)?.Cancel();
    }

    private void Fire()
    {
        if (Volatile.Read(ref _done) == 1 || Interlocked.CompareExchange(ref _checking, 1, 0) != 0)
        {
            return;
        }

        _ = CheckAsync();
    }

    private async Task CheckAsync()
    {
        var stop = new CancellationTokenSource();
        Volatile.Write(ref _stop, stop);
        try
        {
            if (Volatile.Read(ref _done) == 1)
            {
                return;
            }

            var snapshot = await _dataSource.GetLockWaitSnapshotAsync(
                new LockWaitSnapshotOptions { LongestTransactionCount = 0, MaxQueryLength = 200 }, stop.Token).ConfigureAwait(false);
            if (snapshot.Session(_pid) is not { IsWaiting: true } me || Volatile.Read(ref _done) == 1 || Interlocked.Exchange(ref _done, 1) == 1)
            {
                return;
            }

            _timer.Dispose();
            var blocker = (me.Holders.Count > 0 ? me.Holders[0] : me.BlockerChain.FirstOrDefault()) is var b && b != 0 ? snapshot.Session(b) : null;
            var root = me.RootBlocker is { } r ? snapshot.Session(r) : null;
            RowLockTelemetry.LongLockWaits.Add(1, new KeyValuePair<string, object?>(RowLockHistograms.KindTag, _kind ?? me.WaitingFor?.Kind.ToString().ToLowerInvariant() ?? "other"), RowLockTelemetry.DbSystem);
            LockWaitLog.PassedThreshold(
                _logger,
                _pid,
                (long)_threshold.TotalMilliseconds,
                Math.Round((me.WaitDuration ?? _threshold).TotalSeconds, 1),
                me.WaitingFor?.ToString() ?? "a lock",
                Describe(blocker),
                root is null || root == blocker ? "the same" : Describe(root));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A snapshot that fails (pool exhausted, server gone) or a logger that throws must not surface anywhere.
        }
        finally
        {
            Volatile.Write(ref _checking, 0);
        }
    }

    /// <summary><c>pid 4711 (billing) idle in transaction for 12 s: UPDATE ...</c>, or a prepared transaction's gid.</summary>
    private static string Describe(LockSession? session)
    {
        if (session is null)
        {
            return "unknown";
        }

        if (session.IsPreparedTransaction)
        {
            return "prepared transaction '" + session.PreparedTransactionId + "' (end it with COMMIT PREPARED or ROLLBACK PREPARED)";
        }

        var text = string.Create(CultureInfo.InvariantCulture, $"pid {session.Pid}");
        if (!string.IsNullOrEmpty(session.ApplicationName))
        {
            text += " (" + session.ApplicationName + ")";
        }

        if (session.IsInOtherDatabase)
        {
            text += " in database " + session.Database;
        }

        if (session.State is { } state)
        {
            text += " " + state + (session.StateDuration is { } d ? string.Create(CultureInfo.InvariantCulture, $" for {d.TotalSeconds:0} s") : "");
        }

        if (session.WaitingFor is { } target)
        {
            text += ", itself waiting for " + target;
        }

        return session.Query is { Length: > 0 } query ? text + ": " + query.ReplaceLineEndings(" ") : text;
    }
}

/// <summary>The lock-wait warning (source-generated).</summary>
internal static partial class LockWaitLog
{
    [LoggerMessage(RowLockEventIds.LockWaitPassedThreshold, LogLevel.Warning,
        "Lock wait passed {ThresholdMs} ms and goes on: pid {Pid} has waited {WaitSeconds} s for {Target}; blocked by {Blocker}; root blocker {RootBlocker}")]
    public static partial void PassedThreshold(ILogger logger, int pid, long thresholdMs, double waitSeconds, string target, string blocker, string rootBlocker);
}
