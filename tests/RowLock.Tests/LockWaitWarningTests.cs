using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Issue 26 item 7: a lock wait that passes its threshold logs one Warning naming the blocker and what it does, while
/// the wait is still going on, and counts it in <c>rowlock.lock.wait.long</c>.
/// </summary>
public sealed class LockWaitWarningTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static readonly TimeSpan Threshold = TimeSpan.FromMilliseconds(300);

    [Fact]
    public async Task A_unit_of_work_waiting_on_a_row_warns_once_with_the_blocker_before_the_wait_ends()
    {
        var table = await db.CreateHotRowTableAsync("warn");
        await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
        await sessions.RunAsync("holder", $"BEGIN; UPDATE {table} SET v = v + 1 WHERE id = 1;");
        var logger = new RecordingLogger<TransactionRunner>();
        var counted = new ConcurrentQueue<string?>();
        using var listener = CountLongWaits(counted);
        var runner = new TransactionRunner(db.DataSource, new TransactionRunnerOptions { LockWaitWarningThreshold = Threshold }, logger);

        var run = runner.RunAsync(async (tx, ct) =>
        {
            await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate, ct);
        });
        var warning = await FirstWarningAsync(() => logger.Entries.Where(e => e.EventId.Id == RowLockEventIds.LockWaitPassedThreshold));

        Assert.False(run.IsCompleted); // warned while the wait goes on
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains($"for row (0,1) of public.{table}", warning.Message, StringComparison.Ordinal);
        Assert.Contains($"blocked by pid {sessions.Pids["holder"]} (holder) idle in transaction for ", warning.Message, StringComparison.Ordinal);
        Assert.Contains($"UPDATE {table} SET v = v + 1 WHERE id = 1", warning.Message, StringComparison.Ordinal);
        await sessions.RunAsync("holder", "COMMIT");
        await run.WaitAsync(TimeSpan.FromSeconds(60));
        await Task.Delay(3 * Threshold); // a second warning would have come by now
        Assert.Single(logger.Entries, e => e.EventId.Id == RowLockEventIds.LockWaitPassedThreshold);
        Assert.Contains("row", counted);
    }

    [Fact]
    public async Task A_session_advisory_lock_waiting_behind_another_session_warns_while_it_waits()
    {
        var key = AdvisoryLockKey.FromName("warn." + Guid.NewGuid().ToString("N"));
        await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
        await sessions.RunAsync("owner", $"SELECT pg_advisory_lock({key.Value})");
        var logger = new RecordingLogger<AdvisoryLocks>();
        using var factory = LoggerFactory.Create(b => b.AddProvider(new SingleLoggerProvider(logger)).SetMinimumLevel(LogLevel.Trace));
        var locks = new AdvisoryLocks(db.DataSource, factory) { LockWaitWarningThreshold = Threshold };

        var acquire = locks.AcquireAsync(key);
        var warning = await FirstWarningAsync(() => logger.Entries.Where(e => e.EventId.Id == RowLockEventIds.LockWaitPassedThreshold));

        Assert.False(acquire.IsCompleted);
        Assert.Contains("for advisory lock", warning.Message, StringComparison.Ordinal);
        Assert.Contains($"blocked by pid {sessions.Pids["owner"]} (owner) idle", warning.Message, StringComparison.Ordinal);
        await sessions.RunAsync("owner", $"SELECT pg_advisory_unlock({key.Value})");
        await using var handle = await acquire.WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task Without_a_logger_a_long_wait_is_still_counted_for_a_metrics_listener()
    {
        // The watch is skipped only when nobody would hear it: a metrics listener alone is someone.
        var table = await db.CreateHotRowTableAsync("count");
        await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
        await sessions.RunAsync("holder", $"BEGIN; UPDATE {table} SET v = v + 1 WHERE id = 1;");
        var counted = new ConcurrentQueue<string?>();
        using var listener = CountLongWaits(counted);
        var runner = new TransactionRunner(db.DataSource, new TransactionRunnerOptions { LockWaitWarningThreshold = Threshold });

        var run = runner.RunAsync(async (tx, ct) =>
        {
            await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate, ct);
        });
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!counted.Contains("row"))
        {
            Assert.True(DateTime.UtcNow < deadline, "No long lock wait counted within 60 s.");
            await Task.Delay(20);
        }

        Assert.False(run.IsCompleted);
        await sessions.RunAsync("holder", "COMMIT");
        await run.WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task A_wait_shorter_than_the_threshold_logs_nothing()
    {
        var table = await db.CreateHotRowTableAsync("quick");
        var logger = new RecordingLogger<TransactionRunner>();
        var runner = new TransactionRunner(db.DataSource, new TransactionRunnerOptions { LockWaitWarningThreshold = TimeSpan.FromSeconds(30) }, logger);

        await runner.RunAsync(async (tx, ct) => await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate, ct));

        Assert.DoesNotContain(logger.Entries, e => e.EventId.Id == RowLockEventIds.LockWaitPassedThreshold);
    }

    private static async Task<RecordingLogger<T>.Entry> FirstWarningAsync<T>(Func<IEnumerable<RecordingLogger<T>.Entry>> entries)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            if (entries().FirstOrDefault() is { } entry)
            {
                return entry;
            }

            Assert.True(DateTime.UtcNow < deadline, "No lock-wait warning within 60 s.");
            await Task.Delay(20);
        }
    }

    private static MeterListener CountLongWaits(ConcurrentQueue<string?> into)
    {
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == RowLockTelemetry.MeterName && instrument.Name == "rowlock.lock.wait.long")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "rowlock.lock.kind")
                {
                    into.Enqueue(tag.Value as string);
                }
            }
        });
        listener.Start();
        return listener;
    }

    private sealed class SingleLoggerProvider(ILogger logger) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => logger;

        public void Dispose()
        {
        }
    }
}
