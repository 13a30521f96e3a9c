using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>3 and 5: 8 workers draining a job queue, SKIP LOCKED claims against plain FOR UPDATE claims.</summary>
internal static class QueueBenchmark
{
    private const int Workers = 8;

    public static async Task<string> RunAsync(BenchContext context)
    {
        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"{Workers} workers claim a batch, mark it done, commit, until the queue is empty. The queue has a partial index on pending jobs (`WHERE NOT done`), as a real queue should: without it every claim scans past the done rows and throughput falls as the queue drains (measured first: 5,659 jobs/s at batch 100).");
        table.AppendLine();
        table.AppendLine("| batch | jobs | RowLock ClaimRowsAsync (SKIP LOCKED) jobs/s | plain FOR UPDATE jobs/s | ratio | each job exactly once (RowLock / plain) |");
        table.AppendLine("|---:|---:|---:|---:|---:|---|");
        foreach (var batch in new[] { 1, 10, 100 })
        {
            var jobs = context.Quick ? 3_000 : batch switch { 1 => 10_000, 10 => 30_000, _ => 100_000 };
            var (claimRate, claimOnce) = await DrainAsync(context, jobs, batch, ClaimAsync);
            var (plainRate, plainOnce) = await DrainAsync(context, jobs, batch, PlainAsync);
            table.AppendLine(CultureInfo.InvariantCulture,
                $"| {batch} | {jobs:N0} | {claimRate:N0} | {plainRate:N0} | {claimRate / plainRate:F2} | {(claimOnce ? "yes" : "NO")} / {(plainOnce ? "yes" : "NO")} |");
        }

        table.AppendLine();
        table.Append(await FifoAsync(context));

        await FillAsync(context, 1_000);
        var claimBytes = await Bench.BytesPerOpAsync(200, async () => await ClaimAsync(context.DataSource, 1));
        table.AppendLine();
        table.AppendLine(CultureInfo.InvariantCulture, $"Allocations per claim-and-complete of one job (RowLock, one worker): {claimBytes:N0} bytes.");
        return table.ToString();
    }

    /// <summary>
    /// FIFO consumption at 16 workers, one job per transaction, oldest first: the final "mark done" travelling with
    /// COMMIT saves a round trip per job against the hand-written claim, update, commit.
    /// </summary>
    private static async Task<string> FifoAsync(BenchContext context)
    {
        const int fifoWorkers = 16;
        var jobs = context.Quick ? 4_000 : 20_000;
        var repeats = context.Repeats;
        var sides = FifoSides(context.DataSource);

        var rates = sides.Select(_ => new List<double>()).ToArray();
        var once = sides.Select(_ => true).ToArray();
        for (var r = 0; r < repeats; r++)
        {
            for (var i = 0; i < sides.Length; i++)
            {
                var s = (i + r) % sides.Length;
                var (rate, exactlyOnce) = await DrainAsync(context, jobs, 1, sides[s].Claim, fifoWorkers);
                rates[s].Add(rate);
                once[s] &= exactlyOnce;
            }
        }

        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"FIFO consumption: {fifoWorkers} workers, one job per transaction, oldest first, {jobs:N0} jobs, {repeats} alternating repeat(s), median jobs/s.");
        text.AppendLine();
        text.AppendLine("| side | jobs/s | ratio to (b) | each job exactly once |");
        text.AppendLine("|---|---:|---:|---|");
        var baseline = Bench.Median(rates[0]);
        for (var s = 0; s < sides.Length; s++)
        {
            var median = Bench.Median(rates[s]);
            text.AppendLine(CultureInfo.InvariantCulture, $"| {sides[s].Name} | {median:N0} | {median / baseline:F2} | {(once[s] ? "yes" : "NO")} |");
        }

        return text.ToString();
    }

    /// <summary>The FIFO sides, the runner bound to <paramref name="dataSource"/> (direct or through a proxy).</summary>
    internal static (string Name, Func<NpgsqlDataSource, int, Task<int>> Claim)[] FifoSides(NpgsqlDataSource dataSource)
    {
        var runner = new TransactionRunner(dataSource);
        return
        [
            ("(b) hand-written SKIP LOCKED: claim, update, commit", HandClaimAsync),
            ("(c) RowLock ClaimRowsAsync: claim, update, commit", ClaimAsync),
            ("(f) RowLock TransactionRunner, completion deferred to COMMIT", (ds, batch) => runner.RunAsync(async (tx, ct) =>
            {
                var ids = await tx.ClaimRowsAsync<long>("SELECT id FROM bench_jobs WHERE NOT done ORDER BY id", null, batch, ct);
                if (ids.Count > 0)
                {
                    tx.DeferUntilCommit("UPDATE bench_jobs SET done = true, claims = claims + 1 WHERE id = ANY(@ids)", new { ids = ids.ToArray() });
                }

                return ids.Count;
            })),
            ("(g) RowLock ClaimRowsAsync + ExecuteAndCommitAsync", async (ds, batch) =>
            {
                await using var connection = await ds.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var ids = await tx.ClaimRowsAsync<long>("SELECT id FROM bench_jobs WHERE NOT done ORDER BY id", null, batch);
                if (ids.Count == 0)
                {
                    await tx.CommitAsync();
                    return 0;
                }

                await tx.ExecuteAndCommitAsync("UPDATE bench_jobs SET done = true, claims = claims + 1 WHERE id = ANY(@ids)", new { ids = ids.ToArray() });
                return ids.Count;
            }),
        ];
    }

    private static Task<int> HandClaimAsync(NpgsqlDataSource dataSource, int batch) => HandWrittenClaimAsync(dataSource, batch, "FOR UPDATE SKIP LOCKED");

    private static async Task FillAsync(BenchContext context, int jobs)
    {
        await context.ExecuteAsync($"DROP TABLE IF EXISTS bench_jobs; CREATE TABLE bench_jobs (id bigint PRIMARY KEY, done boolean NOT NULL DEFAULT false, claims int NOT NULL DEFAULT 0); INSERT INTO bench_jobs (id) SELECT g FROM generate_series(1, {jobs}) g; CREATE INDEX bench_jobs_pending ON bench_jobs (id) WHERE NOT done;");
        await context.ExecuteAsync("VACUUM ANALYZE bench_jobs");
    }

    internal static async Task<(double Rate, bool ExactlyOnce)> DrainAsync(BenchContext context, int jobs, int batch, Func<NpgsqlDataSource, int, Task<int>> claim, int workers = Workers, NpgsqlDataSource? through = null)
    {
        var dataSource = through ?? context.DataSource;
        await FillAsync(context, jobs);
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, workers).Select(_ => Task.Run(async () =>
        {
            while (await claim(dataSource, batch) > 0 || await ExistsPendingAsync(dataSource))
            {
            }
        })));
        var rate = jobs / clock.Elapsed.TotalSeconds;
        var wrong = await context.ScalarAsync<long>("SELECT count(*) FROM bench_jobs WHERE claims <> 1 OR NOT done");
        return (rate, wrong == 0);
    }

    private static async Task<bool> ExistsPendingAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand("SELECT EXISTS (SELECT 1 FROM bench_jobs WHERE NOT done)");
        return (bool)(await command.ExecuteScalarAsync())!;
    }

    private static async Task<int> ClaimAsync(NpgsqlDataSource dataSource, int batch)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var ids = await tx.ClaimRowsAsync<long>("SELECT id FROM bench_jobs WHERE NOT done ORDER BY id", null, batch);
        await CompleteAsync(connection, tx, ids);
        return ids.Count;
    }

    /// <summary>The same claim with a plain FOR UPDATE: workers queue behind the first one's rows.</summary>
    private static Task<int> PlainAsync(NpgsqlDataSource dataSource, int batch) => HandWrittenClaimAsync(dataSource, batch, "FOR UPDATE");

    private static async Task<int> HandWrittenClaimAsync(NpgsqlDataSource dataSource, int batch, string lockingClause)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using var select = new NpgsqlCommand($"SELECT id FROM bench_jobs WHERE NOT done ORDER BY id LIMIT {batch} {lockingClause}", connection, tx);
        var ids = new List<long>();
        await using (var reader = await select.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                ids.Add(reader.GetInt64(0));
            }
        }

        await CompleteAsync(connection, tx, ids);
        return ids.Count;
    }

    private static async Task CompleteAsync(NpgsqlConnection connection, NpgsqlTransaction tx, IReadOnlyList<long> ids)
    {
        if (ids.Count > 0)
        {
            await using var update = new NpgsqlCommand("UPDATE bench_jobs SET done = true, claims = claims + 1 WHERE id = ANY($1)", connection, tx);
            update.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = [.. ids] });
            await update.ExecuteNonQueryAsync();
        }

        await tx.CommitAsync();
    }
}
