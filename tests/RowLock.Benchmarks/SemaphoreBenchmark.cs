using System.Globalization;
using System.Text;
using Medallion.Threading.Postgres;
using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>
/// 8: a counting semaphore (at most N = 4 holders) with 16 contenders: acquire + release cycles/s of RowLock's semaphore
/// (session and transaction scope) against what a user would write instead: a counter row locked FOR UPDATE (poll while
/// full), and DistributedLock.Postgres used N ways (try each of N lock names, poll while all are taken). Every side
/// counts its holders in process; the table shows the most seen at once (never above N for a correct side). The sides run
/// in alternating rounds in one process; ratios are per round, median [min, max].
/// </summary>
internal static class SemaphoreBenchmark
{
    private const int Slots = 4;
    private const int Contenders = 16;
    private static readonly TimeSpan PollDelay = TimeSpan.FromMilliseconds(1);

    private sealed record Side(string Name, Func<Func<int, Task<int>>> Make);

    public static async Task<string> RunAsync(BenchContext context)
    {
        var ds = context.DataSource;
        var table = "bench_semaphore_counter";
        await context.ExecuteAsync($"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, holders int NOT NULL); INSERT INTO {table} VALUES (1, 0)");
        var semaphore = SemaphoreKey.FromName("bench.semaphore");
        var distributed = Enumerable.Range(0, Slots).Select(i => new PostgresDistributedLock(new PostgresAdvisoryLockKey("bench.semaphore." + i, allowHashing: true), ds)).ToArray();
        var inside = new int[5];
        var maxInside = new int[5];

        async Task Hold(int side)
        {
            var now = Interlocked.Increment(ref inside[side]);
            int seen;
            while ((seen = Volatile.Read(ref maxInside[side])) < now && Interlocked.CompareExchange(ref maxInside[side], now, seen) != seen)
            {
            }

            await Task.Yield();
            Interlocked.Decrement(ref inside[side]);
        }

        Side[] sides =
        [
            new("RowLock session semaphore (`dataSource.AcquireSemaphoreAsync`)", () => async w =>
            {
                await using var handle = await ds.AcquireSemaphoreAsync(semaphore, Slots, TimeSpan.FromSeconds(30));
                await Hold(0);
                return 0;
            }),
            new("RowLock transaction semaphore (begin, `tx.AcquireSemaphoreAsync`, commit)", () => async w =>
            {
                await using var connection = await ds.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                await tx.AcquireSemaphoreAsync(semaphore, Slots, TimeSpan.FromSeconds(30));
                await Hold(1);
                await tx.CommitAsync();
                return 0;
            }),
            new("counter row `FOR UPDATE` (take: lock, check, increment, commit; poll 1 ms while full; give back: decrement)", () => async w =>
            {
                var polls = 0;
                await using var connection = await ds.OpenConnectionAsync();
                while (true)
                {
                    await using var tx = await connection.BeginTransactionAsync();
                    await using var read = new NpgsqlCommand($"SELECT holders FROM {table} WHERE id = 1 FOR UPDATE", connection, tx);
                    if ((int)(await read.ExecuteScalarAsync())! < Slots)
                    {
                        await using var take = new NpgsqlCommand($"UPDATE {table} SET holders = holders + 1 WHERE id = 1", connection, tx);
                        await take.ExecuteNonQueryAsync();
                        await tx.CommitAsync();
                        break;
                    }

                    await tx.RollbackAsync();
                    polls++;
                    await Task.Delay(PollDelay);
                }

                await Hold(2);
                await using var give = new NpgsqlCommand($"UPDATE {table} SET holders = holders - 1 WHERE id = 1", connection);
                await give.ExecuteNonQueryAsync();
                return polls;
            }),
            new("DistributedLock.Postgres 1.3.1 used N ways (`TryAcquireAsync` on each of N names; poll 1 ms while all taken)", () => async w =>
            {
                var polls = 0;
                while (true)
                {
                    for (var i = 0; i < Slots; i++)
                    {
                        var handle = await distributed[(w + i) % Slots].TryAcquireAsync();
                        if (handle is not null)
                        {
                            await using (handle)
                            {
                                await Hold(3);
                            }

                            return polls;
                        }
                    }

                    polls++;
                    await Task.Delay(PollDelay);
                }
            }),
        ];

        var duration = TimeSpan.FromSeconds(context.Quick ? 0.5 : 1.5);
        var rounds = context.Quick ? 4 : 12;
        var ops = sides.Select(s => s.Make()).ToArray();
        foreach (var op in ops)
        {
            await Bench.LoopAsync(Contenders, TimeSpan.FromMilliseconds(500), op); // warm up
        }

        var rates = sides.Select(_ => new List<double>()).ToArray();
        var polled = new long[sides.Length];
        var cycles = new long[sides.Length];
        var errors = new long[sides.Length];
        for (var r = 0; r < rounds; r++)
        {
            foreach (var s in Bench.RoundOrder(sides.Length, r))
            {
                var result = await Bench.LoopAsync(Contenders, duration, ops[s]);
                rates[s].Add(result.PerSecond);
                polled[s] += result.Wasted;
                cycles[s] += result.Committed;
                errors[s] += result.Errors;
            }
        }

        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture,
            $"At most N = {Slots} holders, {Contenders} contenders, each taking a slot, yielding once while inside, and giving it back, in a loop; {rounds} rounds of {duration.TotalSeconds} s per side, alternating forward and backward. Ratios are per round against the RowLock session semaphore: median [min, max]. \"most inside\" is the largest number of holders the side's own in-process counter saw at once; \"polls/cycle\" counts the sleeps of the polling sides.");
        report.AppendLine();
        report.AppendLine("| side | cycles/s (median) | ratio to RowLock session semaphore | most inside | polls/cycle | errors |");
        report.AppendLine("|---|---:|---:|---:|---:|---:|");
        for (var s = 0; s < sides.Length; s++)
        {
            report.AppendLine(CultureInfo.InvariantCulture,
                $"| {sides[s].Name} | {Bench.Median(rates[s]):N0} | {Bench.Spread(Bench.Ratios(rates[s], rates[0]))} | {maxInside[s]} | {(cycles[s] == 0 ? 0 : (double)polled[s] / cycles[s]):F2} | {errors[s]} |");
        }

        await context.ExecuteAsync($"DROP TABLE {table}");
        return report.ToString();
    }
}
