using System.Data;
using System.Diagnostics.Metrics;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests.Contracts;

/// <summary>
/// What the runner promises through one endpoint: a unit of work that fails with 40001 or 40P01 is re-run whole, so each
/// unit is applied exactly once and no update is lost, whatever the interleaving; composed with the row-lock helpers,
/// the row-lock guarantees hold inside units of work. Real deadlocks and real serialization failures.
/// </summary>
public abstract class TransactionRunnerContract<TEndpoint>(TEndpoint endpoint) : Contract<TEndpoint>(endpoint)
    where TEndpoint : ContractEndpoint, IEndpointAvailability
{
    private TransactionRunner Runner(Action<TransactionRunnerOptions>? configure = null, ILogger<TransactionRunner>? logger = null)
    {
        var options = new TransactionRunnerOptions();
        configure?.Invoke(options);
        return new TransactionRunner(DataSource, options, logger);
    }

    [ContractFact]
    public async Task Opposite_order_transfers_deadlock_and_the_loser_is_rerun_whole()
    {
        var table = TestTables.Unique("accounts");
        await Db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, balance int NOT NULL); INSERT INTO {table} VALUES (1, 100), (2, 100);");
        var retries = 0;
        var runner = Runner(o => o.Retry.OnRetry = _ =>
        {
            Interlocked.Increment(ref retries);
            return default;
        });
        var bothHoldOne = new AsyncBarrier(2);

        await Workers.RaceAsync(2, async worker =>
        {
            var (from, to) = worker == 0 ? (1, 2) : (2, 1);
            var attempt = 0;
            await runner.RunAsync(async (tx, ct) =>
            {
                attempt++;
                var connection = tx.Connection!;
                await connection.ExecuteAsync(new CommandDefinition($"UPDATE {table} SET balance = balance - 10 WHERE id = @from", new { from }, tx, cancellationToken: ct));
                if (attempt == 1)
                {
                    await bothHoldOne.SignalAndWaitAsync(ct); // each holds one account: the next update closes the cycle
                }

                await connection.ExecuteAsync(new CommandDefinition($"UPDATE {table} SET balance = balance + 10 WHERE id = @to", new { to }, tx, cancellationToken: ct));
            });
        });

        Assert.Equal(1, retries);
        Assert.Equal([100, 100], await (await Db.DataSource.OpenConnectionAsync()).QueryAsync<int>($"SELECT balance FROM {table} ORDER BY id"));
    }

    [ContractFact]
    public async Task Repeatable_read_increments_through_the_runner_are_exact_and_retries_are_counted()
    {
        var table = await Db.CreateHotRowTableAsync("counter");
        var retries = 0;
        var logger = new ListLogger<TransactionRunner>();
        var runner = Runner(o =>
        {
            o.IsolationLevel = IsolationLevel.RepeatableRead;
            o.Retry.MaxRetryAttempts = 50;
            o.Retry.OnRetry = _ =>
            {
                Interlocked.Increment(ref retries);
                return default;
            };
        }, logger);

        using var meter = new MeterListener();
        var counted = 0L;
        meter.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == RowLockTelemetry.MeterName && instrument.Name == "rowlock.unit_of_work.retries")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        meter.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag is { Key: "db.response.status_code", Value: PostgresErrorCodes.SerializationFailure })
                {
                    Interlocked.Add(ref counted, value);
                }
            }
        });
        meter.Start();

        await Workers.RaceAsync(8, async _ =>
        {
            for (var i = 0; i < 25; i++)
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    var v = await tx.Connection!.QuerySingleAsync<int>(new CommandDefinition($"SELECT v FROM {table} WHERE id = 1", transaction: tx, cancellationToken: ct));
                    await tx.Connection!.ExecuteAsync(new CommandDefinition($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx, cancellationToken: ct));
                });
            }
        });

        Assert.Equal(200, await Db.ScalarAsync<int>($"SELECT v FROM {table}"));
        Assert.True(retries > 0, "eight workers on one row under REPEATABLE READ must conflict");
        Assert.True(Interlocked.Read(ref counted) >= retries);
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Information && e.Message.Contains("failed with 40001; retrying in", StringComparison.Ordinal)); // Warning with a stack trace in 0.1.0
        Assert.DoesNotContain(logger.Entries, e => e.Level >= LogLevel.Warning);
    }

    [ContractFact]
    public async Task Without_retry_the_same_repeatable_read_race_surfaces_40001()
    {
        var table = await Db.CreateHotRowTableAsync("counter");
        var runner = Runner(o =>
        {
            o.IsolationLevel = IsolationLevel.RepeatableRead;
            o.Retry.ShouldHandle = _ => ValueTask.FromResult(false);
        });
        var bothRead = new AsyncBarrier(2);
        var errors = await Workers.RaceAsync(2, async _ =>
        {
            try
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    var v = await tx.Connection!.QuerySingleAsync<int>($"SELECT v FROM {table} WHERE id = 1", transaction: tx);
                    await bothRead.SignalAndWaitAsync(ct);
                    await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx);
                });
                return null;
            }
            catch (PostgresException e)
            {
                return e.SqlState;
            }
        });

        Assert.Contains(PostgresErrorCodes.SerializationFailure, errors);
    }

    [ContractFact]
    public async Task Sixteen_workers_running_units_on_a_locked_hot_row_lose_no_update()
    {
        var table = await Db.CreateHotRowTableAsync("hot");
        var runner = Runner();
        await Workers.RaceAsync(16, async _ =>
        {
            for (var i = 0; i < 20; i++)
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    var v = (await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = @id", new { id = 1 }, RowLockClause.ForUpdate, ct))[0];
                    await tx.Connection!.ExecuteAsync(new CommandDefinition($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx, cancellationToken: ct));
                });
            }
        });

        Assert.Equal(16 * 20, await Db.ScalarAsync<int>($"SELECT v FROM {table}"));
    }

    [ContractFact]
    public async Task Claims_in_units_of_work_take_every_job_exactly_once()
    {
        var jobs = TestTables.Unique("jobs");
        await Db.ExecuteAsync($"CREATE TABLE {jobs} (id bigint PRIMARY KEY, claims int NOT NULL DEFAULT 0); INSERT INTO {jobs} (id) SELECT g FROM generate_series(1, 300) g;");
        var runner = Runner();
        await Workers.RaceAsync(6, async _ =>
        {
            while (await runner.RunAsync(async (tx, ct) =>
            {
                var ids = await tx.ClaimRowsAsync<long>($"SELECT id FROM {jobs} WHERE claims = 0 ORDER BY id", null, 7, ct);
                await tx.Connection!.ExecuteAsync(new CommandDefinition($"UPDATE {jobs} SET claims = claims + 1 WHERE id = ANY(@ids)", new { ids = ids.ToArray() }, tx, cancellationToken: ct));
                return ids.Count;
            }) > 0)
            {
            }
        });

        Assert.Equal(0L, await Db.ScalarAsync<long>($"SELECT count(*) FROM {jobs} WHERE claims <> 1"));
    }
}
