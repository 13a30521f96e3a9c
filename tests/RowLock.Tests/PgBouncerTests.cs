using System.Data;
using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Every transaction-scoped guarantee through a real PgBouncer in transaction pooling mode (4 server connections shared by all clients).</summary>
public sealed class PgBouncerTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>, IAsyncLifetime
{
    private NpgsqlDataSource _pooled = null!;

    public async Task InitializeAsync()
    {
        if (RowLock.TestServer.PgBouncer.FindBinary() is null)
        {
            return;
        }

        var bouncer = await SharedPgBouncer.GetAsync();
        _pooled = NpgsqlDataSource.Create(bouncer.ConnectionStringFor(db.ConnectionString));
    }

    public async Task DisposeAsync()
    {
        if (_pooled is not null)
        {
            await _pooled.DisposeAsync();
        }
    }

    private sealed record Layer(long Id, int RemainingQty);

    [PgBouncerFact]
    public async Task Clients_really_share_a_few_server_connections()
    {
        var backends = await Workers.RaceAsync(12, async _ =>
        {
            await using var connection = await _pooled.OpenConnectionAsync();
            return await connection.ExecuteScalarAsync<int>("SELECT pg_backend_pid() FROM pg_sleep(0.05)");
        });
        Assert.InRange(backends.Distinct().Count(), 1, 4);
    }

    [PgBouncerFact]
    public async Task Sixteen_workers_on_a_hot_row_through_pgbouncer_lose_no_update()
    {
        await db.ExecuteAsync("CREATE TABLE pb_hot (id int PRIMARY KEY, v int NOT NULL); INSERT INTO pb_hot VALUES (1, 0);");
        var runner = new TransactionRunner(_pooled);
        await Workers.RaceAsync(16, async _ =>
        {
            for (var i = 0; i < 20; i++)
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    var v = (await tx.LockRowsAsync<int>("SELECT v FROM pb_hot WHERE id = @id", new { id = 1 }, RowLockClause.ForUpdate, ct))[0];
                    await tx.Connection!.ExecuteAsync("UPDATE pb_hot SET v = @v WHERE id = 1", new { v = v + 1 }, tx);
                });
            }
        });
        Assert.Equal(320, await db.ScalarAsync<int>("SELECT v FROM pb_hot"));
    }

    [PgBouncerFact]
    public async Task Fifo_consumption_through_pgbouncer_never_oversells()
    {
        await db.ExecuteAsync("""
            CREATE TABLE pb_layers (id bigserial PRIMARY KEY, created timestamptz NOT NULL, remaining_qty int NOT NULL);
            INSERT INTO pb_layers (created, remaining_qty) VALUES (now() - interval '3 days', 100), (now() - interval '2 days', 100), (now() - interval '1 day', 100);
            """);
        var runner = new TransactionRunner(_pooled);
        var sold = await Workers.RaceAsync(5, _ => runner.RunAsync(async (tx, ct) =>
        {
            var layers = await tx.LockRowsAsync<Layer>("SELECT id, remaining_qty AS RemainingQty FROM pb_layers WHERE remaining_qty > 0 ORDER BY created, id", null, RowLockClause.ForUpdate, ct);
            if (layers.Sum(l => l.RemainingQty) < 100)
            {
                return false;
            }

            var left = 100;
            foreach (var layer in layers)
            {
                var take = Math.Min(left, layer.RemainingQty);
                await tx.Connection!.ExecuteAsync("UPDATE pb_layers SET remaining_qty = remaining_qty - @take WHERE id = @id", new { take, id = layer.Id }, tx);
                left -= take;
                if (left == 0)
                {
                    break;
                }
            }

            return true;
        }));
        Assert.Equal(3, sold.Count(s => s));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT sum(remaining_qty) FROM pb_layers"));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM pb_layers WHERE remaining_qty < 0"));
    }

    [PgBouncerFact]
    public async Task Every_clause_works_through_pgbouncer()
    {
        await db.ExecuteAsync("CREATE TABLE pb_rows (id int PRIMARY KEY, v int NOT NULL); INSERT INTO pb_rows SELECT g, g FROM generate_series(1, 3) g;");
        RowLockClause[] strengths = [RowLockClause.ForUpdate, RowLockClause.ForNoKeyUpdate, RowLockClause.ForShare, RowLockClause.ForKeyShare];
        foreach (var strength in strengths)
        {
            foreach (var clause in new[] { strength, strength.NoWait(), strength.SkipLocked(), strength.WithTimeout(TimeSpan.FromSeconds(1)), strength.Of("pb_rows") })
            {
                await using var connection = await _pooled.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                Assert.Equal(3, (await tx.LockRowsAsync<int>("SELECT v FROM pb_rows ORDER BY id", null, clause)).Count);
                Assert.Single(await tx.LockRowsByKeyAsync<int, int>("pb_rows", "id", [2], clause));
                await tx.CommitAsync();
            }
        }
    }

    [PgBouncerFact]
    public async Task A_timed_out_lock_leaves_no_lock_timeout_behind_for_the_next_client()
    {
        await db.ExecuteAsync("CREATE TABLE pb_timeout (id int PRIMARY KEY); INSERT INTO pb_timeout VALUES (1);");
        await using var holder = await db.DataSource.OpenConnectionAsync(); // direct, so it does not take a bouncer slot
        await using var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>("SELECT id FROM pb_timeout", null, RowLockClause.ForUpdate);

        for (var i = 0; i < 8; i++)
        {
            await using var connection = await _pooled.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            await Assert.ThrowsAsync<LockNotAvailableException>(() =>
                tx.LockRowsAsync<int>("SELECT id FROM pb_timeout", null, RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromMilliseconds(50))));
            await tx.CommitAsync();
        }

        // Whichever of the 4 server connections the next clients get, none carries the 50 ms.
        var seen = await Workers.RaceAsync(12, async _ =>
        {
            await using var connection = await _pooled.OpenConnectionAsync();
            return await connection.ExecuteScalarAsync<string>("SELECT current_setting('lock_timeout') FROM pg_sleep(0.02)");
        });
        Assert.All(seen, s => Assert.Equal("0", s));
    }

    [PgBouncerFact]
    public async Task Claims_through_pgbouncer_take_every_job_exactly_once()
    {
        await db.ExecuteAsync("CREATE TABLE pb_jobs (id bigint PRIMARY KEY, claims int NOT NULL DEFAULT 0); INSERT INTO pb_jobs (id) SELECT g FROM generate_series(1, 300) g;");
        var runner = new TransactionRunner(_pooled);
        await Workers.RaceAsync(6, async _ =>
        {
            while (await runner.RunAsync(async (tx, ct) =>
            {
                var ids = await tx.ClaimRowsAsync<long>("SELECT id FROM pb_jobs WHERE claims = 0 ORDER BY id", null, 7, ct);
                await tx.Connection!.ExecuteAsync("UPDATE pb_jobs SET claims = claims + 1 WHERE id = ANY(@ids)", new { ids = ids.ToArray() }, tx);
                return ids.Count;
            }) > 0)
            {
            }
        });
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM pb_jobs WHERE claims <> 1"));
    }

    [PgBouncerFact]
    public async Task Transaction_advisory_locks_through_pgbouncer_let_exactly_one_worker_run_per_round()
    {
        for (var round = 0; round < 5; round++)
        {
            var key = AdvisoryLockKey.FromName($"pb.once.{round}.{Guid.NewGuid()}");
            // As many workers as PgBouncer has server connections: each holds its transaction open until all have tried.
            var everyoneTried = new AsyncBarrier(4);
            var ran = await Workers.RaceAsync(4, async _ =>
            {
                await using var connection = await _pooled.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var mine = await tx.TryAcquireAdvisoryLockAsync(key);
                await everyoneTried.SignalAndWaitAsync();
                await tx.CommitAsync();
                return mine;
            });
            Assert.Equal(1, ran.Count(r => r));
        }
    }

    [PgBouncerFact]
    public async Task The_runner_retries_serialization_failures_through_pgbouncer()
    {
        await db.ExecuteAsync("CREATE TABLE pb_rr (id int PRIMARY KEY, v int NOT NULL); INSERT INTO pb_rr VALUES (1, 0);");
        var options = new TransactionRunnerOptions { IsolationLevel = IsolationLevel.RepeatableRead };
        options.Retry.MaxRetryAttempts = 50;
        var runner = new TransactionRunner(_pooled, options);
        await Workers.RaceAsync(6, async _ =>
        {
            for (var i = 0; i < 10; i++)
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    var v = await tx.Connection!.ExecuteScalarAsync<int>("SELECT v FROM pb_rr WHERE id = 1", transaction: tx);
                    await tx.Connection!.ExecuteAsync("UPDATE pb_rr SET v = @v WHERE id = 1", new { v = v + 1 }, tx);
                });
            }
        });
        Assert.Equal(60, await db.ScalarAsync<int>("SELECT v FROM pb_rr"));
    }

    [PgBouncerFact]
    public async Task Transaction_held_handles_give_mutual_exclusion_through_pgbouncer()
    {
        var key = AdvisoryLockKey.FromName("pb.handle." + Guid.NewGuid());
        var inside = 0;
        var max = 0;
        var gate = new object();
        var entries = 0;
        await Workers.RaceAsync(8, async _ =>
        {
            for (var i = 0; i < 5; i++)
            {
                await using var handle = await _pooled.AcquireAdvisoryLockInTransactionAsync(key, TimeSpan.FromSeconds(30));
                Assert.True(handle.HeldByTransaction);
                var now = Interlocked.Increment(ref inside);
                lock (gate)
                {
                    max = Math.Max(max, now);
                }

                Interlocked.Increment(ref entries);
                await Task.Delay(2);
                Interlocked.Decrement(ref inside);
            }
        });
        Assert.Equal(1, max);
        Assert.Equal(40, entries);
        await using var free = await db.DataSource.TryAcquireAdvisoryLockAsync(key);
        Assert.NotNull(free);
    }
}
