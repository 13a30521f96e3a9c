using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>
/// 8: the hot-row and FIFO comparisons again, with a network between client and server: every byte goes through a
/// <see cref="DelayProxy"/> whose delay is calibrated until a measured <c>SELECT 1</c> round trip through it is 0.5 ms
/// and then 1.2 ms. On one machine the client and the server share the cores, so the direct tables measure CPU per
/// transaction; here the round trips a transaction makes while it holds the row lock decide its throughput.
/// </summary>
internal static class NetworkBenchmark
{
    private static readonly string[] HotRowKeys = ["b", "c", "f", "g", "i"];

    public static async Task<string> RunAsync(BenchContext context)
    {
        var target = new NpgsqlConnectionStringBuilder(context.ConnectionString);
        var duration = TimeSpan.FromSeconds((context.Quick ? 1.5 : 4) * context.Scale);
        var repeats = context.Repeats;
        var fifoJobs = (int)((context.Quick ? 2_000 : 6_000) * context.Scale);
        var text = new StringBuilder();
        var direct = await SelectOneMicrosAsync(context.DataSource);
        text.AppendLine(CultureInfo.InvariantCulture,
            $"A `SELECT 1` round trip measured directly (median of three batches' medians of 150, one connection): {direct / 1000:F3} ms. Through the proxy the one-way delay is calibrated until that median is the target; it is measured again after the runs. Hot row: {duration.TotalSeconds} s per variant and worker count, {repeats} alternating repeat(s), median committed/s. FIFO: 16 workers, one job per transaction, {fifoJobs:N0} jobs, {repeats} alternating repeat(s). Proxy CPU: the proxy process's CPU time (user + kernel) during the run, per committed transaction; client CPU: this process's. The proxy runs on the same 2 cores as client and server.");
        text.AppendLine();

        var hot = new StringBuilder("| RTT target | workers | variant | committed/s | ratio to (b) | wasted attempts | final value exact | proxy CPU µs/tx | client CPU µs/tx |\n|---:|---:|---|---:|---:|---:|---|---:|---:|\n");
        var fifo = new StringBuilder("| RTT target | side | jobs/s | ratio to (b) | each job exactly once | proxy CPU µs/job | client CPU µs/job |\n|---:|---|---:|---:|---|---:|---:|\n");
        var calibration = new StringBuilder("| RTT target | one-way delay set | `SELECT 1` median before the runs | after the runs | proxy CPU at idle |\n|---:|---:|---:|---:|---:|\n");
        var ratios = new StringBuilder("| RTT target | workers | (c)/(b) | (f)/(b) | (g)/(b) | (i)/(b) |\n|---:|---:|---:|---:|---:|---:|\n");

        await using var proxy = await DelayProxyProcess.StartAsync(target.Host!, target.Port);
        foreach (var targetMillis in new[] { 0.5, 1.2 })
        {
            var proxied = new NpgsqlConnectionStringBuilder(context.ConnectionString) { Host = "127.0.0.1", Port = proxy.Port }.ConnectionString;
            await using var dataSource = NpgsqlDataSource.Create(proxied);
            var measured = await CalibrateAsync(proxy, dataSource, targetMillis * 1000);
            var label = string.Create(CultureInfo.InvariantCulture, $"{targetMillis:F1} ms");

            // Hot row, the comparisons the targets name.
            var variants = HotRowBenchmark.Variants(dataSource).Where(v => HotRowKeys.Contains(v.Key)).ToArray();
            await context.ExecuteAsync(HotRowBenchmark.CreateTable);
            foreach (var workers in new[] { 16, 32 })
            {
                var perSecond = variants.ToDictionary(v => v.Key, _ => new List<double>());
                var last = new Dictionary<string, (Bench.LoopResult Result, bool Exact, long Wasted, double ProxyCpu, double ClientCpu)>();
                for (var r = 0; r < repeats; r++)
                {
                    for (var i = 0; i < variants.Length; i++)
                    {
                        var variant = variants[(i + r) % variants.Length];
                        await context.ExecuteAsync("UPDATE bench_hot SET v = 0 WHERE id = 1");
                        var wastedBefore = variant.Wasted?.Invoke() ?? 0;
                        var (proxyBefore, clientBefore) = (proxy.Cpu, Bench.ProcessCpu());
                        var result = await Bench.LoopAsync(workers, duration, variant.Make(dataSource));
                        var (proxyCpu, clientCpu) = (proxy.Cpu - proxyBefore, Bench.ProcessCpu() - clientBefore);
                        var wasted = (variant.Wasted?.Invoke() ?? 0) - wastedBefore + result.Wasted;
                        var final = await context.ScalarAsync<long>("SELECT v FROM bench_hot WHERE id = 1");
                        perSecond[variant.Key].Add(result.PerSecond);
                        last[variant.Key] = (result, final == result.Committed, wasted,
                            proxyCpu.TotalMicroseconds / Math.Max(1, result.Committed), clientCpu.TotalMicroseconds / Math.Max(1, result.Committed));
                    }
                }

                double M(string k) => Bench.Median(perSecond[k]);
                foreach (var variant in variants)
                {
                    var (result, exact, wasted, proxyCpu, clientCpu) = last[variant.Key];
                    hot.AppendLine(CultureInfo.InvariantCulture,
                        $"| {label} | {workers} | {variant.Name} | {M(variant.Key):N0} | {M(variant.Key) / M("b"):F2} | {wasted} | {(exact && result.Errors == 0 ? "yes" : "NO")} | {proxyCpu:F0} | {clientCpu:F0} |");
                }

                ratios.AppendLine(CultureInfo.InvariantCulture, $"| {label} | {workers} | {M("c") / M("b"):F2} | {M("f") / M("b"):F2} | {M("g") / M("b"):F2} | {M("i") / M("b"):F2} |");
            }

            // FIFO consumption through the same proxy.
            var sides = QueueBenchmark.FifoSides(dataSource);
            var rates = sides.Select(_ => new List<double>()).ToArray();
            var once = sides.Select(_ => true).ToArray();
            var cpu = new (double Proxy, double Client)[sides.Length];
            for (var r = 0; r < repeats; r++)
            {
                for (var i = 0; i < sides.Length; i++)
                {
                    var s = (i + r) % sides.Length;
                    var (proxyBefore, clientBefore) = (proxy.Cpu, Bench.ProcessCpu());
                    var (rate, exactlyOnce) = await QueueBenchmark.DrainAsync(context, fifoJobs, 1, sides[s].Claim, 16, dataSource);
                    cpu[s] = ((proxy.Cpu - proxyBefore).TotalMicroseconds / fifoJobs, (Bench.ProcessCpu() - clientBefore).TotalMicroseconds / fifoJobs);
                    rates[s].Add(rate);
                    once[s] &= exactlyOnce;
                }
            }

            var baseline = Bench.Median(rates[0]);
            for (var s = 0; s < sides.Length; s++)
            {
                var median = Bench.Median(rates[s]);
                fifo.AppendLine(CultureInfo.InvariantCulture,
                    $"| {label} | {sides[s].Name} | {median:N0} | {median / baseline:F2} | {(once[s] ? "yes" : "NO")} | {cpu[s].Proxy:F0} | {cpu[s].Client:F0} |");
            }

            var after = await SelectOneMicrosAsync(dataSource);
            var idleBefore = proxy.Cpu;
            await Task.Delay(TimeSpan.FromSeconds(1));
            var idle = (proxy.Cpu - idleBefore).TotalMilliseconds / 10; // ms per s = % of a core
            calibration.AppendLine(CultureInfo.InvariantCulture,
                $"| {label} | {proxy.DelayMicros:F0} µs each way | {measured / 1000:F3} ms{(Math.Abs(measured - (targetMillis * 1000)) <= targetMillis * 30 ? "" : " (target missed)")} | {after / 1000:F3} ms | {idle:F1} % of a core |");
        }

        text.AppendLine("How the delay is made: every connection goes through a loopback TCP proxy running in a child process of the benchmark (`DelayProxy.cs`). Socket reads are asynchronous; each chunk read is stamped \"due = now + delay\" and queued; one dedicated thread forwards the queue in order, sleeping until the head is due with `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` (its timer slack set to 1 ns, its nice to -10 so a loaded machine delays it less), never `Task.Delay`, whose timer granularity is a millisecond or more. The same delay applies to each direction, so a chunk read later is never due earlier and one queue suffices.");
        text.AppendLine();
        text.AppendLine("How it is checked: a `SELECT 1` on one open connection through the proxy is timed (median of three batches' medians of 150); the one-way delay is adjusted until that round trip is within 3 % of the target, and the same measurement is repeated after the runs. The proxy's own time (its reads, its scheduling, its wake-up lateness) is inside that measurement: the delay set is what is left after the client, the server and the proxy's forwarding. Under load the proxy wakes later than set, so the round trip during the contended runs is longer than calibrated at rest; the \"after\" column shows how far a quiet measurement drifted.");
        text.AppendLine();
        text.AppendLine("Calibration:");
        text.AppendLine();
        text.Append(calibration);
        text.AppendLine();
        text.AppendLine("Hot row through the proxy:");
        text.AppendLine();
        text.Append(hot);
        text.AppendLine();
        text.Append(ratios);
        text.AppendLine();
        text.AppendLine("FIFO consumption through the proxy:");
        text.AppendLine();
        text.Append(fifo);
        return text.ToString();
    }

    /// <summary>Sets the proxy's delay so that a measured <c>SELECT 1</c> median through it is <paramref name="targetMicros"/>; returns the last measurement.</summary>
    private static async Task<double> CalibrateAsync(DelayProxyProcess proxy, NpgsqlDataSource dataSource, double targetMicros)
    {
        await proxy.SetDelayAsync(0);
        var measured = await SelectOneMicrosAsync(dataSource);
        var delay = Math.Max(0, (targetMicros - measured) / 2);
        for (var step = 0; step < 12; step++)
        {
            await proxy.SetDelayAsync(delay);
            measured = await SelectOneMicrosAsync(dataSource);
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  calibrating: delay {delay:F0} µs each way -> SELECT 1 median {measured:F0} µs (target {targetMicros:F0})"));
            if (Math.Abs(measured - targetMicros) <= targetMicros * 0.03)
            {
                break;
            }

            delay = Math.Max(0, delay + ((targetMicros - measured) / 2));
        }

        return measured;
    }

    /// <summary>
    /// A <c>SELECT 1</c> round trip on one open connection, in microseconds: the median of three batches' medians of
    /// 150, so that a burst of load from elsewhere on the machine moves one batch, not the result.
    /// </summary>
    private static async Task<double> SelectOneMicrosAsync(NpgsqlDataSource dataSource)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = new NpgsqlCommand("SELECT 1", connection);
        var medians = new double[3];
        for (var batch = 0; batch < medians.Length; batch++)
        {
            var times = new double[150];
            for (var i = -20; i < times.Length; i++)
            {
                var start = Stopwatch.GetTimestamp();
                await command.ExecuteScalarAsync();
                if (i >= 0)
                {
                    times[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
                }
            }

            medians[batch] = Bench.Median(times);
        }

        return Bench.Median(medians);
    }
}
