using System.Collections.Concurrent;
using System.Data;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// RowLock's histograms and the runner's operation name, seen through a real MeterListener / ActivityListener against a
/// real server. Other test classes record on the same static meter in parallel, so each test keeps only what it caused:
/// measurements made in its own async flow (an AsyncLocal mark), or tagged with its own unique operation name.
/// </summary>
public sealed class MetricsTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static readonly AsyncLocal<string?> Mine = new();

    private sealed record Measurement(string Instrument, double Value, Dictionary<string, object?> Tags);

    /// <summary>Listens to every RowLock instrument; keeps measurements made in this test's flow or carrying its operation name.</summary>
    private static MeterListener Listen(ConcurrentQueue<Measurement> into, string mark)
    {
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == RowLockTelemetry.MeterName)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        void Keep(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var map = new Dictionary<string, object?>();
            foreach (var tag in tags)
            {
                map[tag.Key] = tag.Value;
            }

            if (Mine.Value == mark || Equals(map.GetValueOrDefault("rowlock.operation"), mark))
            {
                into.Enqueue(new Measurement(instrument.Name, value, map));
            }
        }

        listener.SetMeasurementEventCallback<double>((i, v, t, _) => Keep(i, v, t));
        listener.SetMeasurementEventCallback<long>((i, v, t, _) => Keep(i, v, t));
        listener.Start();
        return listener;
    }

    [Fact]
    public async Task A_nowait_conflict_records_a_row_lock_wait_with_outcome_not_available()
    {
        var table = await db.CreateHotRowTableAsync("metrics_nowait");
        var mark = Mine.Value = Guid.NewGuid().ToString("N");
        var measurements = new ConcurrentQueue<Measurement>();
        using var listener = Listen(measurements, mark);

        await using var holder = await db.DataSource.OpenConnectionAsync();
        await using var holding = await holder.BeginTransactionAsync();
        await holding.LockRowsAsync<int>($"SELECT id FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate);

        await using var other = await db.DataSource.OpenConnectionAsync();
        await using var tx = await other.BeginTransactionAsync();
        await Assert.ThrowsAsync<LockNotAvailableException>(() => tx.LockRowsAsync<int>($"SELECT id FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait()));

        var waits = measurements.Where(m => m.Instrument == "rowlock.lock.wait.duration").ToList();
        Assert.Equal(2, waits.Count);
        Assert.Equal(("row", "acquired"), (waits[0].Tags["rowlock.lock.kind"], waits[0].Tags["rowlock.lock.outcome"]));
        Assert.Equal(("row", "not_available"), (waits[1].Tags["rowlock.lock.kind"], waits[1].Tags["rowlock.lock.outcome"]));
        Assert.All(waits, w => Assert.True(w.Value >= 0));
    }

    [Fact]
    public async Task A_waited_row_lock_records_its_wait_once_the_holder_releases()
    {
        var table = await db.CreateHotRowTableAsync("metrics_wait");
        var mark = Mine.Value = Guid.NewGuid().ToString("N");
        var measurements = new ConcurrentQueue<Measurement>();
        using var listener = Listen(measurements, mark);

        await using var holder = await db.DataSource.OpenConnectionAsync();
        var holding = await holder.BeginTransactionAsync();
        await holding.LockRowsAsync<int>($"SELECT id FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate);

        await using var waiter = await db.DataSource.OpenConnectionAsync();
        await using var tx = await waiter.BeginTransactionAsync();
        var waiting = tx.LockRowsAsync<int>($"SELECT id FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate);

        // Release only once the server shows the waiter blocked on the holder, so the recorded wait really spans a wait.
        var holderPid = holder.ProcessID;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (await db.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE @pid = ANY(pg_blocking_pids(pid))", new { pid = holderPid }) == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the waiter never blocked");
            await Task.Delay(10);
        }

        await holding.CommitAsync();
        await holding.DisposeAsync();
        Assert.Single(await waiting.WaitAsync(TimeSpan.FromSeconds(30)));

        // The holder's lock, then the waiter's, recorded when its statement returned.
        var waits = measurements.Where(m => m.Instrument == "rowlock.lock.wait.duration").ToList();
        Assert.Equal(2, waits.Count);
        Assert.All(waits, w => Assert.Equal(("row", "acquired"), (w.Tags["rowlock.lock.kind"], w.Tags["rowlock.lock.outcome"])));
        Assert.True(waits[1].Value > 0);
    }

    [Fact]
    public async Task An_advisory_handle_records_its_wait_and_its_hold_from_acquire_to_dispose()
    {
        var mark = Mine.Value = Guid.NewGuid().ToString("N");
        var measurements = new ConcurrentQueue<Measurement>();
        using var listener = Listen(measurements, mark);
        var locks = new AdvisoryLocks(db.DataSource);
        var key = AdvisoryLockKey.FromName("metrics-" + mark);

        var handle = await locks.AcquireAsync(key, mode: AdvisoryLockMode.Shared);
        Assert.DoesNotContain(measurements, m => m.Instrument == "rowlock.lock.hold.duration");
        await handle.DisposeAsync();
        await handle.DisposeAsync(); // released once: recorded once

        var wait = Assert.Single(measurements, m => m.Instrument == "rowlock.lock.wait.duration");
        Assert.Equal(("advisory", "acquired"), (wait.Tags["rowlock.lock.kind"], wait.Tags["rowlock.lock.outcome"]));
        var hold = Assert.Single(measurements, m => m.Instrument == "rowlock.lock.hold.duration");
        Assert.True(hold.Value > 0);
        Assert.Equal("shared", hold.Tags["rowlock.lock.mode"]);
        Assert.Equal("session", hold.Tags["rowlock.lock.scope"]);

        var transactionHeld = await locks.AcquireInTransactionAsync(key);
        Assert.Null(await locks.TryAcquireAsync(key));
        await transactionHeld.DisposeAsync();
        Assert.Contains(measurements, m => m.Instrument == "rowlock.lock.hold.duration" && Equals(m.Tags["rowlock.lock.scope"], "transaction"));
        Assert.Contains(measurements, m => m.Instrument == "rowlock.lock.wait.duration" && Equals(m.Tags["rowlock.lock.outcome"], "not_available"));
    }

    [Fact]
    public async Task A_named_unit_of_work_tags_its_retry_duration_trace_and_log_scope_with_the_operation_name()
    {
        var table = await db.CreateHotRowTableAsync("metrics_op");
        var operation = "checkout-" + Guid.NewGuid().ToString("N")[..8];
        var measurements = new ConcurrentQueue<Measurement>();
        using var listener = Listen(measurements, operation);
        var activities = new ConcurrentQueue<Activity>();
        using var activityListener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == RowLockTelemetry.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                if (Equals(a.GetTagItem("rowlock.operation"), operation))
                {
                    activities.Enqueue(a);
                }
            },
        };
        ActivitySource.AddActivityListener(activityListener);
        var logger = new ScopeRecordingLogger<TransactionRunner>();
        var runner = new TransactionRunner(db.DataSource, new TransactionRunnerOptions
        {
            IsolationLevel = IsolationLevel.RepeatableRead,
            TimeProvider = new InstantTimeProvider(),
        }, logger);

        var runs = 0;
        await runner.RunAsync(operation, async (tx, ct) =>
        {
            var v = await tx.Connection!.QuerySingleAsync<int>(new CommandDefinition($"SELECT v FROM {table} WHERE id = 1", transaction: tx, cancellationToken: ct));
            if (Interlocked.Increment(ref runs) == 1)
            {
                // Someone else commits after this snapshot was taken: the UPDATE below fails with 40001.
                await db.ExecuteAsync($"UPDATE {table} SET v = v + 100 WHERE id = 1");
            }

            await tx.Connection!.ExecuteAsync(new CommandDefinition($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx, cancellationToken: ct));
        });

        Assert.Equal(2, runs);
        Assert.Equal(101, await db.ScalarAsync<int>($"SELECT v FROM {table}"));
        var retry = Assert.Single(measurements, m => m.Instrument == "rowlock.unit_of_work.retries");
        Assert.Equal(PostgresErrorCodes.SerializationFailure, retry.Tags["db.response.status_code"]);
        Assert.Equal(PostgresErrorCodes.SerializationFailure, retry.Tags["error.type"]);
        Assert.Equal("postgresql", retry.Tags["db.system.name"]);
        // Attempts are units of work plus retries: no counter of their own.
        Assert.DoesNotContain(measurements, m => m.Instrument == "rowlock.unit_of_work.attempts");
        var duration = Assert.Single(measurements, m => m.Instrument == "rowlock.unit_of_work.duration");
        Assert.Equal("committed", duration.Tags["rowlock.unit_of_work.outcome"]);
        Assert.Equal("postgresql", duration.Tags["db.system.name"]);
        Assert.False(duration.Tags.ContainsKey("error.type"));
        Assert.True(duration.Value > 0);

        var activity = Assert.Single(activities);
        Assert.Equal("RowLock.UnitOfWork", activity.OperationName);
        Assert.Equal("RowLock.UnitOfWork " + operation, activity.DisplayName);
        Assert.Equal(2, activity.GetTagItem("rowlock.attempts"));

        var retryLine = Assert.Single(logger.Entries, e => e.EventId == RowLockEventIds.UnitOfWorkRetrying);
        Assert.Contains(retryLine.Scopes, s => s is IEnumerable<KeyValuePair<string, object?>> pairs && pairs.Contains(new KeyValuePair<string, object?>("rowlock.operation", operation)));
    }

    [Fact]
    public async Task An_exhausted_named_unit_of_work_records_its_duration_as_exhausted()
    {
        var operation = "exhaust-" + Guid.NewGuid().ToString("N")[..8];
        var measurements = new ConcurrentQueue<Measurement>();
        using var listener = Listen(measurements, operation);
        var runner = new TransactionRunner(db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider(), Retry = { MaxRetryAttempts = 1 } });

        await Assert.ThrowsAsync<RetryLimitExceededException>(() => runner.RunAsync(operation, (_, _) =>
            throw new PostgresException("injected", "ERROR", "ERROR", PostgresErrorCodes.SerializationFailure)));

        var duration = Assert.Single(measurements, m => m.Instrument == "rowlock.unit_of_work.duration");
        Assert.Equal("exhausted", duration.Tags["rowlock.unit_of_work.outcome"]);
        Assert.Equal(PostgresErrorCodes.SerializationFailure, duration.Tags["db.response.status_code"]);
        Assert.Equal(PostgresErrorCodes.SerializationFailure, duration.Tags["error.type"]);
        Assert.Equal("postgresql", duration.Tags["db.system.name"]);
        // The duration histogram's exhausted outcome is the count: no counter of its own.
        Assert.DoesNotContain(measurements, m => m.Instrument == "rowlock.unit_of_work.exhausted");
    }

    [Fact]
    public async Task A_retry_after_a_lost_connection_names_the_error_type_and_no_made_up_SQLSTATE_and_Polly_gets_the_operation_key()
    {
        var operation = "lost-" + Guid.NewGuid().ToString("N")[..8];
        var measurements = new ConcurrentQueue<Measurement>();
        using var listener = Listen(measurements, operation);
        var keys = new ConcurrentQueue<string?>();
        var options = new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() };
        options.Retry.OnRetry = args =>
        {
            keys.Enqueue(args.Context.OperationKey);
            return default;
        };
        var runner = new TransactionRunner(db.DataSource, options);
        var runs = 0;

        await runner.RunAsync(operation, async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync(new CommandDefinition("SELECT 1", transaction: tx, cancellationToken: ct));
            if (Interlocked.Increment(ref runs) == 1)
            {
                throw new NpgsqlException("Exception while reading from stream", new EndOfStreamException("Attempted to read past the end of the stream."));
            }
        });

        Assert.Equal(2, runs);
        var retry = Assert.Single(measurements, m => m.Instrument == "rowlock.unit_of_work.retries");
        Assert.Equal("System.IO.EndOfStreamException", retry.Tags["error.type"]);
        Assert.False(retry.Tags.ContainsKey("db.response.status_code"));
        Assert.Equal("postgresql", retry.Tags["db.system.name"]);
        Assert.Equal([operation], keys);
    }

    [Fact]
    public void Duration_histograms_have_buckets_well_past_ten_seconds()
    {
        foreach (var histogram in new[] { RowLock.Internal.RowLockHistograms.LockWait, RowLock.Internal.RowLockHistograms.LockHold, RowLock.Internal.RowLockHistograms.UnitOfWork })
        {
            var buckets = histogram.Advice!.HistogramBucketBoundaries!;
            Assert.Contains(60.0, buckets);
            Assert.Equal(600.0, buckets[^1]);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("  ")]
    public async Task A_blank_operation_name_is_refused_before_anything_runs(string name)
    {
        var runner = new TransactionRunner(db.DataSource);
        var ran = false;
        await Assert.ThrowsAnyAsync<ArgumentException>(() => runner.RunAsync(name, (_, _) =>
        {
            ran = true;
            return Task.CompletedTask;
        }));
        Assert.False(ran);
    }

    /// <summary>Records each entry with the scopes active when it was logged (as a scope-including sink would show them).</summary>
    private sealed class ScopeRecordingLogger<T> : ILogger<T>
    {
        private readonly AsyncLocal<ImmutableStack?> _scopes = new();

        public sealed record Entry(EventId EventId, string Message, IReadOnlyList<object> Scopes);

        public ConcurrentQueue<Entry> Entries { get; } = new();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull
        {
            var previous = _scopes.Value;
            _scopes.Value = new ImmutableStack(state, previous);
            return new Pop(() => _scopes.Value = previous);
        }

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var scopes = new List<object>();
            for (var s = _scopes.Value; s is not null; s = s.Next)
            {
                scopes.Add(s.State);
            }

            Entries.Enqueue(new Entry(eventId, formatter(state, exception), scopes));
        }

        private sealed record ImmutableStack(object State, ImmutableStack? Next);

        private sealed class Pop(Action pop) : IDisposable
        {
            public void Dispose() => pop();
        }
    }
}
