using Dapper;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// 32 workers mixing every feature on the same rows. Size from ROWLOCK_STRESS_OPS (operations per worker; CI runs the
/// modest default, a soak sets it large).
/// </summary>
public sealed class StressTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static int OpsPerWorker => int.TryParse(Environment.GetEnvironmentVariable("ROWLOCK_STRESS_OPS"), out var n) && n > 0 ? n : 15;

    private sealed record Layer(long Id, int RemainingQty);

    [Fact]
    public async Task Thirty_two_workers_mixing_every_feature_keep_every_invariant()
    {
        const int WorkerCount = 32;
        var ops = OpsPerWorker;
        const int StockPerLayer = 50;
        var layers = WorkerCount * ops / 10;
        var jobs = WorkerCount * ops * 2;
        await db.ExecuteAsync($"""
            CREATE TABLE s_hot (id int PRIMARY KEY, v bigint NOT NULL); INSERT INTO s_hot VALUES (1, 0);
            CREATE TABLE s_layers (id bigserial PRIMARY KEY, created timestamptz NOT NULL, remaining_qty int NOT NULL);
            INSERT INTO s_layers (created, remaining_qty) SELECT now() + g * interval '1 second', {StockPerLayer} FROM generate_series(1, {layers}) g;
            CREATE TABLE s_jobs (id bigint PRIMARY KEY, claims int NOT NULL DEFAULT 0); INSERT INTO s_jobs (id) SELECT g FROM generate_series(1, {jobs}) g;
            CREATE TABLE s_once (round int PRIMARY KEY, runs int NOT NULL);
            CREATE TABLE s_accounts (id int PRIMARY KEY, balance bigint NOT NULL); INSERT INTO s_accounts SELECT g, 1000 FROM generate_series(1, 8) g;
            """);

        var options = new TransactionRunnerOptions();
        options.Retry.MaxRetryAttempts = 50;
        var runner = new TransactionRunner(db.DataSource, options);
        long increments = 0, consumed = 0, claimed = 0, onceAttempts = 0;

        await Workers.RaceAsync(WorkerCount, async worker =>
        {
            var random = new Random(worker);
            for (var i = 0; i < ops; i++)
            {
                switch ((worker + i) % 5)
                {
                    case 0:
                        await runner.RunAsync(async (tx, ct) =>
                        {
                            var v = (await tx.LockRowsAsync<long>("SELECT v FROM s_hot WHERE id = 1", null, RowLockClause.ForUpdate, ct))[0];
                            await tx.Connection!.ExecuteAsync("UPDATE s_hot SET v = @v WHERE id = 1", new { v = v + 1 }, tx);
                        });
                        Interlocked.Increment(ref increments);
                        break;
                    case 1:
                        var want = 1 + random.Next(30);
                        var sold = await runner.RunAsync(async (tx, ct) =>
                        {
                            var stock = await tx.LockRowsAsync<Layer>("SELECT id, remaining_qty AS RemainingQty FROM s_layers WHERE remaining_qty > 0 ORDER BY created, id LIMIT 5", null, RowLockClause.ForUpdate, ct);
                            if (stock.Sum(l => l.RemainingQty) < want)
                            {
                                return 0;
                            }

                            var left = want;
                            foreach (var layer in stock)
                            {
                                var take = Math.Min(left, layer.RemainingQty);
                                await tx.Connection!.ExecuteAsync("UPDATE s_layers SET remaining_qty = remaining_qty - @take WHERE id = @id", new { take, id = layer.Id }, tx);
                                left -= take;
                                if (left == 0)
                                {
                                    break;
                                }
                            }

                            return want;
                        });
                        Interlocked.Add(ref consumed, sold);
                        break;
                    case 2:
                        var got = await runner.RunAsync(async (tx, ct) =>
                        {
                            var ids = await tx.ClaimRowsAsync<long>("SELECT id FROM s_jobs WHERE claims = 0 ORDER BY id", null, 3, ct);
                            await tx.Connection!.ExecuteAsync("UPDATE s_jobs SET claims = claims + 1 WHERE id = ANY(@ids)", new { ids = ids.ToArray() }, tx);
                            return ids.Count;
                        });
                        Interlocked.Add(ref claimed, got);
                        break;
                    case 3:
                        var round = i % 5;
                        await runner.RunAsync(async (tx, ct) =>
                        {
                            if (await tx.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromName($"stress.once.{round}"), cancellationToken: ct))
                            {
                                await tx.Connection!.ExecuteAsync("INSERT INTO s_once VALUES (@round, 1) ON CONFLICT (round) DO NOTHING", new { round }, tx);
                            }
                        });
                        Interlocked.Increment(ref onceAttempts);
                        break;
                    default:
                        var from = 1 + random.Next(8);
                        var to = 1 + ((from + random.Next(7)) % 8);
                        await runner.RunAsync(async (tx, ct) =>
                        {
                            // Deliberately in request order (not key order): deadlocks happen and are retried whole.
                            await tx.Connection!.ExecuteAsync("UPDATE s_accounts SET balance = balance - 5 WHERE id = @from", new { from }, tx);
                            await tx.Connection!.ExecuteAsync("UPDATE s_accounts SET balance = balance + 5 WHERE id = @to", new { to }, tx);
                        });
                        break;
                }
            }
        });

        Assert.Equal(increments, await db.ScalarAsync<long>("SELECT v FROM s_hot"));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM s_layers WHERE remaining_qty < 0"));
        Assert.Equal((long)layers * StockPerLayer, consumed + await db.ScalarAsync<long>("SELECT sum(remaining_qty) FROM s_layers"));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM s_jobs WHERE claims > 1"));
        Assert.Equal(claimed, await db.ScalarAsync<long>("SELECT count(*) FROM s_jobs WHERE claims = 1"));
        Assert.True(await db.ScalarAsync<long>("SELECT count(*) FROM s_once") <= 5);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM s_once WHERE runs <> 1"));
        Assert.Equal(8000L, await db.ScalarAsync<long>("SELECT sum(balance) FROM s_accounts"));
        Assert.Equal(0L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.datname = current_database() AND (NOT l.granted OR l.locktype = 'advisory')"));
    }
}
