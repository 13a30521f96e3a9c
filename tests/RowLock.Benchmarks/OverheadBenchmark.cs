using System.Globalization;
using System.Text;
using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>1 and 5: uncontended lock-update-commit, RowLock against the same SQL written by hand; round trips and allocations.</summary>
internal static class OverheadBenchmark
{
    private static async Task UpdateAsync(NpgsqlConnection connection, NpgsqlTransaction tx, int v)
    {
        await using var update = new NpgsqlCommand("UPDATE bench_row SET v = $1 WHERE id = 1", connection, tx);
        update.Parameters.Add(new NpgsqlParameter<int> { TypedValue = v });
        await update.ExecuteNonQueryAsync();
    }

    public static Func<Task> Hand(NpgsqlDataSource dataSource) => async () =>
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using var select = new NpgsqlCommand("SELECT v FROM bench_row WHERE id = 1 FOR UPDATE", connection, tx);
        var v = (int)(await select.ExecuteScalarAsync())!;
        await UpdateAsync(connection, tx, v + 1);
        await tx.CommitAsync();
    };

    public static Func<Task> Helper(NpgsqlDataSource dataSource) => async () =>
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var rows = await tx.LockRowsAsync<int>("SELECT v FROM bench_row WHERE id = 1", null, RowLockClause.ForUpdate);
        await UpdateAsync(connection, tx, rows[0] + 1);
        await tx.CommitAsync();
    };

    public static Func<Task> Runner(NpgsqlDataSource dataSource)
    {
        var runner = new TransactionRunner(dataSource);
        return () => runner.RunAsync(async (tx, ct) =>
        {
            var rows = await tx.LockRowsAsync<int>("SELECT v FROM bench_row WHERE id = 1", null, RowLockClause.ForUpdate, ct);
            await UpdateAsync(tx.Connection!, tx, rows[0] + 1);
        });
    }

    /// <summary>The runner with the update deferred to its commit round trip: the same three round trips as hand-written.</summary>
    public static Func<Task> RunnerDeferred(NpgsqlDataSource dataSource)
    {
        var runner = new TransactionRunner(dataSource);
        return () => runner.RunAsync(async (tx, ct) =>
        {
            var rows = await tx.LockRowsAsync<int>("SELECT v FROM bench_row WHERE id = 1", null, RowLockClause.ForUpdate, ct);
            tx.DeferUntilCommit("UPDATE bench_row SET v = @v WHERE id = 1", new { v = rows[0] + 1 });
        });
    }

    /// <summary>The helper with the update sent with COMMIT (<c>ExecuteAndCommitAsync</c>): two round trips.</summary>
    public static Func<Task> HelperCommitted(NpgsqlDataSource dataSource) => async () =>
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var rows = await tx.LockRowsAsync<int>("SELECT v FROM bench_row WHERE id = 1", null, RowLockClause.ForUpdate);
        await tx.ExecuteAndCommitAsync("UPDATE bench_row SET v = @v WHERE id = 1", new { v = rows[0] + 1 });
    };

    public static async Task<string> RunAsync(BenchContext context)
    {
        await context.ExecuteAsync("DROP TABLE IF EXISTS bench_row; CREATE TABLE bench_row (id int PRIMARY KEY, v int NOT NULL); INSERT INTO bench_row VALUES (1, 0);");
        var sides = new (string Name, Func<Task> Op)[]
        {
            ("hand-written Npgsql", Hand(context.DataSource)),
            ("RowLock LockRowsAsync", Helper(context.DataSource)),
            ("RowLock TransactionRunner", Runner(context.DataSource)),
            ("RowLock TransactionRunner, update deferred to COMMIT", RunnerDeferred(context.DataSource)),
            ("RowLock LockRowsAsync + ExecuteAndCommitAsync", HelperCommitted(context.DataSource)),
        };
        var ops = context.Quick ? 300 : 2000;
        var rounds = context.Quick ? 5 : 10;
        foreach (var side in sides)
        {
            await Bench.MicrosPerOpAsync(100, side.Op); // warm up
        }

        // Alternate the sides round by round; the ratio is the median of per-round ratios.
        // Client CPU: this process's user + kernel time per operation (the server is another process), the cost RowLock adds on the caller's side.
        var micros = sides.Select(_ => new List<double>()).ToArray();
        var cpuMicros = sides.Select(_ => new List<double>()).ToArray();
        for (var r = 0; r < rounds; r++)
        {
            for (var s = 0; s < sides.Length; s++)
            {
                var index = (s + r) % sides.Length;
                var cpuBefore = Environment.CpuUsage.TotalTime;
                micros[index].Add(await Bench.MicrosPerOpAsync(ops, sides[index].Op));
                cpuMicros[index].Add((Environment.CpuUsage.TotalTime - cpuBefore).TotalMicroseconds / ops);
            }
        }

        var roundTrips = await CountRoundTripsAsync(context, sides.Length);
        var allocations = new double[sides.Length];
        for (var s = 0; s < sides.Length; s++)
        {
            allocations[s] = await Bench.BytesPerOpAsync(500, sides[s].Op);
        }

        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"Lock one row `FOR UPDATE`, update it, commit; one connection, no contention; {rounds} alternating rounds of {ops} operations.");
        table.AppendLine();
        table.AppendLine("| side | µs/op (median of rounds) | ratio to hand-written | client CPU µs/op | CPU ratio | round trips/op | bytes allocated/op | allocation ratio |");
        table.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        for (var s = 0; s < sides.Length; s++)
        {
            var ratio = Bench.Median(micros[s].Zip(micros[0], (a, b) => a / b));
            var cpuRatio = Bench.Median(cpuMicros[s].Zip(cpuMicros[0], (a, b) => a / b));
            table.AppendLine(CultureInfo.InvariantCulture,
                $"| {sides[s].Name} | {Bench.Median(micros[s]):F0} | {ratio:F3} | {Bench.Median(cpuMicros[s]):F0} | {cpuRatio:F2} | {roundTrips[s]:F2} | {allocations[s]:N0} | {allocations[s] / allocations[0]:F2} |");
        }

        return table.ToString();
    }

    private static async Task<double[]> CountRoundTripsAsync(BenchContext context, int sideCount)
    {
        var target = new NpgsqlConnectionStringBuilder(context.ConnectionString);
        await using var proxy = new RoundTripProxy(target.Host!, target.Port);
        await using var proxied = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(context.ConnectionString) { Host = "127.0.0.1", Port = proxy.Port, MaxPoolSize = 1 }.ConnectionString);
        Func<Task>[] ops = [Hand(proxied), Helper(proxied), Runner(proxied), RunnerDeferred(proxied), HelperCommitted(proxied)];
        var result = new double[sideCount];
        for (var s = 0; s < sideCount; s++)
        {
            await ops[s]();  // the connection is open and pooled before counting
            var before = proxy.RoundTrips;
            for (var i = 0; i < 100; i++)
            {
                await ops[s]();
            }

            await Task.Delay(50);
            result[s] = (proxy.RoundTrips - before) / 100.0;
        }

        return result;
    }
}
