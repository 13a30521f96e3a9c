using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>
/// 7: the subtransaction cliff. One writer takes N NOWAIT row locks one by one and keeps its transaction open, while
/// 16 readers run short SELECTs and one updater commits small updates (ordinary write traffic). Every NOWAIT lock RowLock
/// takes runs in a savepoint, a subtransaction that gets its own xid because FOR UPDATE marks the row; past 64 of them
/// (PGPROC_MAX_CACHED_SUBXIDS) the writer's subxid cache overflows, every snapshot taken in the cluster is
/// "suboverflowed", and a reader must resolve through pg_subtrans every xid it meets between its snapshot's xmin (held
/// back by the writer) and xmax: here, the updater's recent rows. Without the updater the cliff does not show: the
/// writer's own xids are all newer than any snapshot's xmax while it is open. Compared, alternating in this process: the
/// same locks as plain statements (no savepoint), and all of them in one statement (one savepoint).
/// </summary>
internal static class SavepointBenchmark
{
    private const int Readers = 16;
    private const int Rows = 1_000;
    private const int UpdateBatch = 10;
    private const int HeldUpdates = 200;
    private static readonly TimeSpan Hold = TimeSpan.FromMilliseconds(20);

    private sealed record Side(string Name, Func<NpgsqlConnection, NpgsqlTransaction, long[], Task> Lock);

    private sealed record Run(double ReaderRate, double LockRate, double UpdateRate, double SubtransPerQuery, long WriterSubxids, double CpuMicrosPerQuery);

    private static double CpuPerQuery(TimeSpan cpu, long queries) => cpu.TotalMicroseconds / Math.Max(1, queries);

    public static async Task<string> RunAsync(BenchContext context)
    {
        await context.ExecuteAsync($"DROP TABLE IF EXISTS bench_savepoint; CREATE TABLE bench_savepoint (id bigint PRIMARY KEY, counter bigint NOT NULL DEFAULT 0, payload text NOT NULL); INSERT INTO bench_savepoint (id, payload) SELECT g, repeat('x', 40) FROM generate_series(1, {Rows}) g;");
        await context.ExecuteAsync("VACUUM ANALYZE bench_savepoint");
        var duration = TimeSpan.FromSeconds(context.Quick ? 1.5 : 4);
        var repeats = context.Repeats;
        var sides = new Side[]
        {
            new("RowLock `LockRowsAsync` NOWAIT, one by one (a savepoint each)", async (_, tx, ids) =>
            {
                foreach (var id in ids)
                {
                    await tx.LockRowsAsync<long>("SELECT id FROM bench_savepoint WHERE id = @id", new { id }, RowLockClause.ForUpdate.NoWait());
                }
            }),
            new("plain `FOR UPDATE NOWAIT`, one by one (no savepoint)", async (connection, tx, ids) =>
            {
                foreach (var id in ids)
                {
                    await using var command = new NpgsqlCommand("SELECT id FROM bench_savepoint WHERE id = $1 FOR UPDATE NOWAIT", connection, tx);
                    command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
                    await command.ExecuteScalarAsync();
                }
            }),
            new("RowLock `LockRowsByKeyAsync` NOWAIT, all in one statement (one savepoint)", async (_, tx, ids) =>
                await tx.LockRowsByKeyAsync<long, long>("bench_savepoint", "id", ids, RowLockClause.ForUpdate.NoWait())),
        };

        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture,
            $"One writer: BEGIN, lock N of rows 1-{Rows / 2} one by one, hold the transaction open {Hold.TotalMilliseconds:N0} ms, COMMIT, again. Meanwhile {Readers} readers run `SELECT count(*), sum(counter) FROM bench_savepoint` ({Rows:N0} rows, a seq scan, one snapshot each) and one updater commits `UPDATE ... SET counter = counter + 1` on {UpdateBatch} of rows {(Rows / 2) + 1}-{Rows} at a time (synchronous_commit off). {duration.TotalSeconds} s per side, {repeats} alternating repeat(s), median. \"writer subxids\" = distinct xmax of the writer's locked rows other than its top-level xid, read in its open transaction (the subtransaction xids it holds; above 64 its subxid cache overflows). \"pg_subtrans reads/query\" = pg_stat_slru 'Subtrans' blks_hit + blks_read per reader query, over the run.");
        var baseline = await ReadersAloneAsync(context, duration);
        table.AppendLine();
        table.AppendLine(CultureInfo.InvariantCulture, $"Readers and updater, no writer: {baseline.ReaderRate:N0} reader queries/s, {baseline.UpdateRate:N0} updater commits/s, {baseline.CpuMicrosPerQuery:N0} µs reader backend CPU/query, {baseline.SubtransPerQuery:F2} pg_subtrans reads/query.");
        table.AppendLine();
        table.AppendLine("| N | side | reader queries/s | ratio to no savepoint | reader backend CPU µs/query | updater commits/s | writer locks/s | writer subxids | pg_subtrans reads/query |");
        table.AppendLine("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var n in new[] { 1, 64, 100, 500 })
        {
            var runs = sides.Select(_ => new List<Run>()).ToArray();
            for (var r = 0; r < repeats; r++)
            {
                for (var s = 0; s < sides.Length; s++)
                {
                    var index = (s + r) % sides.Length;
                    runs[index].Add(await MeasureAsync(context, sides[index], n, duration));
                }
            }

            var plainReaders = Bench.Median(runs[1].Select(x => x.ReaderRate));
            for (var s = 0; s < sides.Length; s++)
            {
                var readers = Bench.Median(runs[s].Select(x => x.ReaderRate));
                table.AppendLine(CultureInfo.InvariantCulture,
                    $"| {n} | {sides[s].Name} | {readers:N0} | {readers / plainReaders:F2} | {Bench.Median(runs[s].Select(x => x.CpuMicrosPerQuery)):N0} | {Bench.Median(runs[s].Select(x => x.UpdateRate)):N0} | {Bench.Median(runs[s].Select(x => x.LockRate)):N0} | {runs[s].Max(x => x.WriterSubxids)} | {Bench.Median(runs[s].Select(x => x.SubtransPerQuery)):F2} |");
            }
        }

        await HeldAsync(context, table, duration, repeats);
        return table.ToString();
    }

    /// <summary>
    /// The same cliff without the writer's own churn: the writer takes N locks, then sits idle in its open transaction while
    /// the updater commits a fixed number of updates and the readers are measured. Alternating with and without savepoints.
    /// </summary>
    private static async Task HeldAsync(BenchContext context, StringBuilder table, TimeSpan duration, int repeats)
    {
        table.AppendLine();
        table.AppendLine(CultureInfo.InvariantCulture,
            $"Held: the writer locks N rows one by one with RowLock, then stays idle in its open transaction; the updater commits {HeldUpdates} updates of {UpdateBatch} rows; then the {Readers} readers alone are measured for {duration.TotalSeconds} s; the writer rolls back and the table is vacuumed. {repeats} alternating repeat(s), median.");
        table.AppendLine();
        table.AppendLine("| N | reader queries/s, `NoWait()` (savepoints) | reader queries/s, `NoWait().WithoutSavepoint()` | ratio | reader backend CPU µs/query (savepoints / without) | CPU ratio | pg_subtrans reads/query (savepoints / without) |");
        table.AppendLine("|---:|---:|---:|---:|---|---:|---|");
        var clauses = new[] { RowLockClause.ForUpdate.NoWait(), RowLockClause.ForUpdate.NoWait().WithoutSavepoint() };
        foreach (var n in new[] { 1, 64, 65, 100, 500 })
        {
            var runs = clauses.Select(_ => new List<(double Rate, double Subtrans, double Cpu)>()).ToArray();
            for (var r = 0; r < repeats; r++)
            {
                for (var c = 0; c < clauses.Length; c++)
                {
                    var index = (c + r) % clauses.Length;
                    runs[index].Add(await HeldOnceAsync(context, clauses[index], n, duration));
                }
            }

            var with = Bench.Median(runs[0].Select(x => x.Rate));
            var without = Bench.Median(runs[1].Select(x => x.Rate));
            var cpuWith = Bench.Median(runs[0].Select(x => x.Cpu));
            var cpuWithout = Bench.Median(runs[1].Select(x => x.Cpu));
            table.AppendLine(CultureInfo.InvariantCulture,
                $"| {n} | {with:N0} | {without:N0} | {with / without:F2} | {cpuWith:N0} / {cpuWithout:N0} | {cpuWith / cpuWithout:F2} | {Bench.Median(runs[0].Select(x => x.Subtrans)):F2} / {Bench.Median(runs[1].Select(x => x.Subtrans)):F2} |");
        }
    }

    private static async Task<(double Rate, double Subtrans, double Cpu)> HeldOnceAsync(BenchContext context, RowLockClause clause, int n, TimeSpan duration)
    {
        await context.ExecuteAsync("VACUUM bench_savepoint");
        await using var writer = await context.DataSource.OpenConnectionAsync();
        await using var tx = await writer.BeginTransactionAsync();
        for (var id = 1L; id <= n; id++)
        {
            await tx.LockRowsAsync<long>("SELECT id FROM bench_savepoint WHERE id = @id", new { id }, clause);
        }

        await UpdateAsync(context, CancellationToken.None, HeldUpdates);

        var before = await SubtransReadsAsync(context);
        var (queries, elapsed, cpu) = await ReadAsync(context, duration);
        var reads = await SubtransReadsAsync(context) - before;
        await tx.RollbackAsync();
        return (queries / elapsed.TotalSeconds, reads / (double)Math.Max(1, queries), CpuPerQuery(cpu, queries));
    }

    private static async Task<Run> ReadersAloneAsync(BenchContext context, TimeSpan duration)
    {
        var before = await SubtransReadsAsync(context);
        using var stop = new CancellationTokenSource();
        var updater = Task.Run(() => UpdateAsync(context, stop.Token));
        var (queries, elapsed, cpu) = await ReadAsync(context, duration);
        await stop.CancelAsync();
        var updates = await updater;
        var reads = await SubtransReadsAsync(context) - before;
        return new Run(queries / elapsed.TotalSeconds, 0, updates / elapsed.TotalSeconds, reads / (double)Math.Max(1, queries), 0, CpuPerQuery(cpu, queries));
    }

    private static async Task<Run> MeasureAsync(BenchContext context, Side side, int n, TimeSpan duration)
    {
        var before = await SubtransReadsAsync(context);
        using var stop = new CancellationTokenSource();
        var updater = Task.Run(() => UpdateAsync(context, stop.Token));
        var writer = Task.Run(() => WriteAsync(context, side, n, stop.Token));
        var (queries, elapsed, cpu) = await ReadAsync(context, duration);
        await stop.CancelAsync();
        var (locks, lockTime, subxids) = await writer;
        var updates = await updater;
        var reads = await SubtransReadsAsync(context) - before;
        return new Run(queries / elapsed.TotalSeconds, locks / lockTime.TotalSeconds, updates / elapsed.TotalSeconds, reads / (double)Math.Max(1, queries), subxids, CpuPerQuery(cpu, queries));
    }

    /// <summary>Ordinary write traffic: small committed updates, so that readers meet recent xids between their snapshot's xmin and xmax.</summary>
    private static async Task<long> UpdateAsync(BenchContext context, CancellationToken stop, long limit = long.MaxValue)
    {
        long updates = 0;
        await using var connection = await context.DataSource.OpenConnectionAsync(CancellationToken.None);
        // synchronous_commit off: a busy OLTP rate on this small machine, where waiting for each WAL flush would hide the effect.
        await using (var off = new NpgsqlCommand("SET synchronous_commit = off", connection))
        {
            await off.ExecuteNonQueryAsync(CancellationToken.None);
        }

        await using var command = new NpgsqlCommand($"UPDATE bench_savepoint SET counter = counter + 1 WHERE id BETWEEN $1 AND $1 + {UpdateBatch - 1}", connection);
        var first = new NpgsqlParameter<long>();
        command.Parameters.Add(first);
        while (!stop.IsCancellationRequested && updates < limit)
        {
            first.TypedValue = (Rows / 2) + 1 + (updates * UpdateBatch % (Rows / 2));
            await command.ExecuteNonQueryAsync(CancellationToken.None);
            updates++;
        }

        return updates;
    }

    /// <summary>The writer loop; returns the locks taken, the time spent taking them, and the most xids it held at once.</summary>
    private static async Task<(long Locks, TimeSpan LockTime, long MaxSubxids)> WriteAsync(BenchContext context, Side side, int n, CancellationToken stop)
    {
        long locks = 0, maxSubxids = 0, round = 0;
        var lockTime = TimeSpan.Zero;
        await using var connection = await context.DataSource.OpenConnectionAsync(CancellationToken.None);
        while (!stop.IsCancellationRequested)
        {
            // A different window of rows each round, so that every round locks rows the last one touched.
            var first = round++ * n % ((Rows / 2) - n + 1);
            var ids = Enumerable.Range(1, n).Select(i => (long)(first + i)).ToArray();
            await using var tx = await connection.BeginTransactionAsync(CancellationToken.None);
            var clock = Stopwatch.StartNew();
            await side.Lock(connection, tx, ids);
            lockTime += clock.Elapsed;
            locks += n;
            if (round <= 2)
            {
                // Measured, not assumed: a row locked in a subtransaction carries that subtransaction's xid as xmax. (pg_locks
                // cannot tell: a released subtransaction gives its xid lock up; PostgreSQL 16's pg_stat_get_backend_subxact can.)
                await using var count = new NpgsqlCommand(
                    "SELECT count(DISTINCT xmax::text) FILTER (WHERE xmax::text <> (pg_current_xact_id()::text::bigint % 4294967296)::text) FROM bench_savepoint WHERE id = ANY($1)", connection, tx);
                count.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = ids });
                maxSubxids = Math.Max(maxSubxids, (long)(await count.ExecuteScalarAsync(CancellationToken.None))!);
            }

            await Task.Delay(Hold, CancellationToken.None);
            await tx.CommitAsync(CancellationToken.None);
        }

        return (locks, lockTime, maxSubxids);
    }

    /// <summary>Reader queries, elapsed time, and the CPU time the readers' backends spent (Linux /proc; zero elsewhere).</summary>
    private static async Task<(long Queries, TimeSpan Elapsed, TimeSpan Cpu)> ReadAsync(BenchContext context, TimeSpan duration)
    {
        // Unpooled, so that each reader's backend exits at the end of the run and flushes its pg_stat_slru counts.
        var unpooled = new NpgsqlConnectionStringBuilder(context.ConnectionString) { Pooling = false }.ConnectionString;
        long queries = 0, cpuTicks = 0;
        using var stop = new CancellationTokenSource(duration);
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, Readers).Select(_ => Task.Run(async () =>
        {
            await using var connection = new NpgsqlConnection(unpooled);
            await connection.OpenAsync(CancellationToken.None);
            var startTicks = BackendCpuTicks(connection.ProcessID);
            await using var command = new NpgsqlCommand("SELECT count(*), sum(counter) FROM bench_savepoint", connection);
            while (!stop.IsCancellationRequested)
            {
                await command.ExecuteScalarAsync(CancellationToken.None);
                Interlocked.Increment(ref queries);
            }

            Interlocked.Add(ref cpuTicks, BackendCpuTicks(connection.ProcessID) - startTicks);
        })));
        return (queries, clock.Elapsed, TimeSpan.FromSeconds(cpuTicks / 100.0));
    }

    /// <summary>
    /// utime + stime of a local server backend, in clock ticks (USER_HZ, 100 on Linux). CPU time, unlike throughput, is
    /// barely moved by the other processes sharing the machine: it is the cost a query pays wherever it runs.
    /// </summary>
    private static long BackendCpuTicks(int pid)
    {
        var path = $"/proc/{pid}/stat";
        if (!File.Exists(path))
        {
            return 0;
        }

        var stat = File.ReadAllText(path);
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
    }

    private static async Task<long> SubtransReadsAsync(BenchContext context)
    {
        // Backends flush their SLRU counts when they exit or go idle; give the readers that just exited a moment.
        await Task.Delay(300);
        return await context.ScalarAsync<long>("SELECT blks_hit + blks_read FROM pg_stat_slru WHERE name = 'Subtrans'");
    }
}
