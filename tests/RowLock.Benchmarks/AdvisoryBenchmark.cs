using System.Globalization;
using System.Text;
using Medallion.Threading.Postgres;
using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>
/// 4: advisory acquire+release cycles/s, each worker on its own key (no contention: the cost of the lock itself).
/// The sides run in rounds, alternating inside one process on one data source; each round compares the sides it just
/// ran, and the table reports the median of those per-round ratios with their smallest and largest value, so a noisy
/// machine shows up as a wide spread instead of a wrong number. Client CPU per cycle comes from the process's CPU time
/// over each run, round trips from a counting proxy, allocations from a sequential loop.
/// </summary>
internal static class AdvisoryBenchmark
{
    private const int Hand = 0;
    private const int Handle = 1;
    private const int Distributed = 2;

    /// <summary>One way to take and release an advisory lock; the key is the worker's own (1000 + worker).</summary>
    private sealed record Side(string Name, Func<NpgsqlDataSource, Func<int, Task<int>>> Make);

    private static readonly Side[] Sides =
    [
        new("hand-written Npgsql pg_advisory_lock / pg_advisory_unlock", ds => async w =>
        {
            await using var connection = await ds.OpenConnectionAsync();
            await using var lockCommand = new NpgsqlCommand("SELECT pg_advisory_lock($1)", connection);
            lockCommand.Parameters.Add(new NpgsqlParameter<long> { TypedValue = 1000 + w });
            await lockCommand.ExecuteNonQueryAsync();
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock($1)", connection);
            unlock.Parameters.Add(new NpgsqlParameter<long> { TypedValue = 1000 + w });
            await unlock.ExecuteNonQueryAsync();
            return 0;
        }),
        new("RowLock session handle (`dataSource.AcquireAdvisoryLockAsync`)", ds => async w =>
        {
            await using var handle = await ds.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromInt64(1000 + w));
            return 0;
        }),
        new("DistributedLock.Postgres 1.3.1 `AcquireAsync`", ds => async w =>
        {
            await using var handle = await new PostgresDistributedLock(new PostgresAdvisoryLockKey(1000 + w), ds).AcquireAsync();
            return 0;
        }),
        new("RowLock session handle, `LockLost` watched", ds => async w =>
        {
            await using var handle = await ds.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromInt64(1000 + w));
            return handle.LockLost.IsCancellationRequested ? 1 : 0;
        }),
        new("RowLock transaction try-lock (begin, try, commit)", ds => async w =>
        {
            await using var connection = await ds.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            await tx.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromInt64(1000 + w));
            await tx.CommitAsync();
            return 0;
        }),
    ];

    public static async Task<string> RunAsync(BenchContext context)
    {
        var duration = TimeSpan.FromSeconds(context.Quick ? 0.2 : 0.25);
        var rounds = context.Quick ? 8 : 40;
        var ops = Sides.Select(s => s.Make(context.DataSource)).ToArray();

        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture,
            $"Acquire + release cycles/s, each worker on its own key; {rounds} rounds, each running every side for {duration.TotalSeconds} s, forward in even rounds and backward in odd ones (the session handle runs right next to the hand-written calls and to DistributedLock, before them as often as after), on one data source, with a full GC before each run. A ratio is computed per round (both sides from the same round); the table gives the median with the smallest and largest per-round ratio. Client CPU is this process's CPU time per cycle (the server's is not in it).");
        table.AppendLine();
        table.AppendLine("| workers | side | cycles/s (median) | ratio to hand-written: median [min, max] | client CPU µs/cycle | errors |");
        table.AppendLine("|---:|---|---:|---:|---:|---:|");
        var versusDistributed = new StringBuilder();
        foreach (var workers in new[] { 1, 8 })
        {
            foreach (var op in ops)
            {
                await Bench.LoopAsync(workers, TimeSpan.FromMilliseconds(500), op); // warm up: JIT, and a pool with a connection per worker
            }

            var rates = Sides.Select(_ => new List<double>()).ToArray();
            var cpu = Sides.Select(_ => new List<double>()).ToArray();
            var errors = new long[Sides.Length];
            for (var r = 0; r < rounds; r++)
            {
                foreach (var s in Bench.RoundOrder(Sides.Length, r))
                {
                    Bench.SettleGarbage();
                    var cpuBefore = Bench.ProcessCpu();
                    var result = await Bench.LoopAsync(workers, duration, ops[s]);
                    var cpuUsed = Bench.ProcessCpu() - cpuBefore;
                    rates[s].Add(result.PerSecond);
                    cpu[s].Add(result.Committed == 0 ? double.NaN : cpuUsed.TotalMicroseconds / result.Committed);
                    errors[s] += result.Errors;
                }
            }

            for (var s = 0; s < Sides.Length; s++)
            {
                table.AppendLine(CultureInfo.InvariantCulture,
                    $"| {workers} | {Sides[s].Name} | {Bench.Median(rates[s]):N0} | {Bench.Spread(Bench.Ratios(rates[s], rates[Hand]))} | {Bench.Median(cpu[s]):F0} | {errors[s]} |");
            }

            versusDistributed.AppendLine(CultureInfo.InvariantCulture,
                $"| {workers} | {Bench.Spread(Bench.Ratios(rates[Handle], rates[Distributed]))} | {Bench.Spread(Bench.Ratios(rates[Handle], rates[Hand]))} |");
        }

        table.AppendLine();
        table.AppendLine("RowLock session handle, per-round ratios in one table: against DistributedLock.Postgres and against the hand-written calls.");
        table.AppendLine();
        table.AppendLine("| workers | to DistributedLock.Postgres: median [min, max] | to hand-written: median [min, max] |");
        table.AppendLine("|---:|---:|---:|");
        table.Append(versusDistributed);

        var roundTrips = await CountRoundTripsAsync(context);
        table.AppendLine();
        table.AppendLine("One worker, sequential: round trips per cycle (counting proxy) and bytes allocated per cycle.");
        table.AppendLine();
        table.AppendLine("| side | round trips/cycle | bytes allocated/cycle |");
        table.AppendLine("|---|---:|---:|");
        for (var s = 0; s < Sides.Length; s++)
        {
            var op = ops[s];
            var bytes = await Bench.BytesPerOpAsync(context.Quick ? 300 : 1000, () => op(0));
            table.AppendLine(CultureInfo.InvariantCulture, $"| {Sides[s].Name} | {roundTrips[s]:F2} | {bytes:N0} |");
        }

        return table.ToString();
    }

    private static async Task<double[]> CountRoundTripsAsync(BenchContext context)
    {
        var target = new NpgsqlConnectionStringBuilder(context.ConnectionString);
        await using var proxy = new RoundTripProxy(target.Host!, target.Port);
        await using var proxied = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(context.ConnectionString) { Host = "127.0.0.1", Port = proxy.Port, MaxPoolSize = 1 }.ConnectionString);
        var result = new double[Sides.Length];
        for (var s = 0; s < Sides.Length; s++)
        {
            var op = Sides[s].Make(proxied);
            await op(0); // the connection is open and pooled before counting
            await Task.Delay(50);
            var before = proxy.RoundTrips;
            for (var i = 0; i < 100; i++)
            {
                await op(0);
            }

            await Task.Delay(50);
            result[s] = (proxy.RoundTrips - before) / 100.0;
        }

        return result;
    }
}
