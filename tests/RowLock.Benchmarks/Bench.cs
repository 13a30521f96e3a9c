using System.Diagnostics;

namespace RowLock.Benchmarks;

/// <summary>Small timing helpers: fixed-duration worker loops and alternating side-by-side runs.</summary>
internal static class Bench
{
    public sealed record LoopResult(long Committed, long Errors, long Wasted, TimeSpan Elapsed)
    {
        public double PerSecond => Committed / Elapsed.TotalSeconds;
    }

    /// <summary>Runs <paramref name="workers"/> loops for <paramref name="duration"/>; each call returns (committed, wasted attempts) or throws (an error surfaced).</summary>
    public static async Task<LoopResult> LoopAsync(int workers, TimeSpan duration, Func<int, Task<int>> operation)
    {
        long committed = 0, errors = 0, wasted = 0;
        using var stop = new CancellationTokenSource(duration);
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, workers).Select(w => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    var extra = await operation(w);
                    Interlocked.Increment(ref committed);
                    Interlocked.Add(ref wasted, extra);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Interlocked.Increment(ref errors);
                }
            }
        })));
        return new LoopResult(committed, errors, wasted, clock.Elapsed);
    }

    /// <summary>Time per operation of a sequential loop, in microseconds.</summary>
    public static async Task<double> MicrosPerOpAsync(int count, Func<Task> operation)
    {
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            await operation();
        }

        return clock.Elapsed.TotalMicroseconds / count;
    }

    /// <summary>Bytes allocated per operation of a sequential loop (all threads, precise).</summary>
    public static async Task<double> BytesPerOpAsync(int count, Func<Task> operation)
    {
        for (var i = 0; i < 50; i++)
        {
            await operation();
        }

        var before = GC.GetTotalAllocatedBytes(precise: true);
        for (var i = 0; i < count; i++)
        {
            await operation();
        }

        return (GC.GetTotalAllocatedBytes(precise: true) - before) / (double)count;
    }

    /// <summary>The order in which round <paramref name="round"/> runs <paramref name="sides"/> sides: forward in even rounds, backward in odd ones, so neighbours stay neighbours (their ratio compares runs a moment apart) and each runs first as often as second.</summary>
    public static IEnumerable<int> RoundOrder(int sides, int round)
    {
        var order = Enumerable.Range(0, sides);
        return round % 2 == 1 ? order.Reverse() : order;
    }

    /// <summary>Per-round ratios of two sides measured in the same rounds (index by index).</summary>
    public static double[] Ratios(IReadOnlyList<double> side, IReadOnlyList<double> baseline) =>
        side.Zip(baseline, (a, b) => a / b).ToArray();

    /// <summary>"median [min, max]" of per-round ratios, so a reader sees the spread as well as the middle.</summary>
    public static string Spread(IReadOnlyCollection<double> ratios) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{Median(ratios):F2} [{ratios.Min():F2}, {ratios.Max():F2}]");

    /// <summary>This process's CPU time so far (all threads); differences give client CPU per run.</summary>
    public static TimeSpan ProcessCpu()
    {
        using var process = Process.GetCurrentProcess();
        return process.TotalProcessorTime;
    }

    /// <summary>Collects garbage and runs pending finalizers, so that one side's garbage is not collected on the next side's time.</summary>
    public static void SettleGarbage()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
