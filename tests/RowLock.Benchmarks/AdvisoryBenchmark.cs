using System.Globalization;
using System.Text;
using Medallion.Threading.Postgres;
using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>4: advisory acquire+release cycles/s, each worker on its own key (no contention: the cost of the lock itself).</summary>
internal static class AdvisoryBenchmark
{
    public static async Task<string> RunAsync(BenchContext context)
    {
        var ds = context.DataSource;
        var duration = TimeSpan.FromSeconds(context.Quick ? 1.5 : 4);
        var repeats = context.Quick ? 1 : 3;
        var sides = new (string Name, Func<int, Task<int>> Op)[]
        {
            ("hand-written Npgsql session lock/unlock", async w =>
            {
                await using var connection = await ds.OpenConnectionAsync();
                await using var lockCommand = new NpgsqlCommand("SELECT pg_advisory_lock($1)", connection);
                lockCommand.Parameters.Add(new NpgsqlParameter<long> { TypedValue = w });
                await lockCommand.ExecuteNonQueryAsync();
                await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock($1)", connection);
                unlock.Parameters.Add(new NpgsqlParameter<long> { TypedValue = w });
                await unlock.ExecuteNonQueryAsync();
                return 0;
            }),
            ("RowLock session handle", async w =>
            {
                await using var handle = await ds.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromInt64(w));
                return 0;
            }),
            ("RowLock transaction try-lock (begin, try, commit)", async w =>
            {
                await using var connection = await ds.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                await tx.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromInt64(w));
                await tx.CommitAsync();
                return 0;
            }),
            ("DistributedLock.Postgres 1.3.1", async w =>
            {
                await using var handle = await new PostgresDistributedLock(new PostgresAdvisoryLockKey(w), ds).AcquireAsync();
                return 0;
            }),
        };

        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"Acquire + release cycles/s, {duration.TotalSeconds} s per side, {repeats} alternating repeat(s), median; same data source for all.");
        table.AppendLine();
        table.AppendLine("| workers | side | cycles/s | ratio to hand-written | errors |");
        table.AppendLine("|---:|---|---:|---:|---:|");
        foreach (var workers in new[] { 1, 8 })
        {
            var rates = sides.Select(_ => new List<double>()).ToArray();
            var errors = new long[sides.Length];
            foreach (var side in sides)
            {
                await Bench.LoopAsync(workers, TimeSpan.FromMilliseconds(200), side.Op); // warm up
            }

            for (var r = 0; r < repeats; r++)
            {
                for (var s = 0; s < sides.Length; s++)
                {
                    var index = (s + r) % sides.Length;
                    var result = await Bench.LoopAsync(workers, duration, sides[index].Op);
                    rates[index].Add(result.PerSecond);
                    errors[index] += result.Errors;
                }
            }

            for (var s = 0; s < sides.Length; s++)
            {
                table.AppendLine(CultureInfo.InvariantCulture,
                    $"| {workers} | {sides[s].Name} | {Bench.Median(rates[s]):N0} | {Bench.Median(rates[s]) / Bench.Median(rates[0]):F2} | {errors[s]} |");
            }
        }

        var bytes = await Bench.BytesPerOpAsync(300, () => sides[1].Op(1));
        table.AppendLine();
        table.AppendLine(CultureInfo.InvariantCulture, $"Allocations per RowLock session-handle cycle (one worker): {bytes:N0} bytes.");
        return table.ToString();
    }
}
