using System.Data;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>2: one hot row under 1, 4, 16 and 32 workers, nine ways.</summary>
internal static class HotRowBenchmark
{
    internal sealed record Variant(string Key, string Name, Func<NpgsqlDataSource, Func<int, Task<int>>> Make, Func<long>? Wasted = null);

    public const string CreateTable = "DROP TABLE IF EXISTS bench_hot; CREATE TABLE bench_hot (id int PRIMARY KEY, v bigint NOT NULL); INSERT INTO bench_hot VALUES (1, 0);";

    public static async Task<string> RunAsync(BenchContext context)
    {
        await context.ExecuteAsync(CreateTable);
        var duration = TimeSpan.FromSeconds((context.Quick ? 1.5 : 5) * context.Scale);
        var repeats = context.Repeats;
        var variants = Variants(context.DataSource);

        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"{duration.TotalSeconds} s per variant and worker count, {repeats} alternating repeat(s), median committed/s. \"wasted\" = attempts that were rolled back and re-run.");
        table.AppendLine();
        table.AppendLine("| workers | variant | committed/s | errors surfaced | wasted attempts | final value exact |");
        table.AppendLine("|---:|---|---:|---:|---:|---|");
        var ratios = new StringBuilder();
        foreach (var workers in new[] { 1, 4, 16, 32 })
        {
            var perSecond = variants.ToDictionary(v => v.Key, _ => new List<double>());
            var last = new Dictionary<string, (Bench.LoopResult Result, bool Exact, long Wasted)>();
            for (var r = 0; r < repeats; r++)
            {
                for (var i = 0; i < variants.Length; i++)
                {
                    var variant = variants[(i + r) % variants.Length];
                    await context.ExecuteAsync("UPDATE bench_hot SET v = 0 WHERE id = 1");
                    var wastedBefore = variant.Wasted?.Invoke() ?? 0;
                    var result = await Bench.LoopAsync(workers, duration, variant.Make(context.DataSource));
                    var wasted = (variant.Wasted?.Invoke() ?? 0) - wastedBefore + result.Wasted;
                    var final = await context.ScalarAsync<long>("SELECT v FROM bench_hot WHERE id = 1");
                    perSecond[variant.Key].Add(result.PerSecond);
                    last[variant.Key] = (result, final == result.Committed, wasted);
                }
            }

            foreach (var variant in variants)
            {
                var (result, exact, wasted) = last[variant.Key];
                table.AppendLine(CultureInfo.InvariantCulture,
                    $"| {workers} | {variant.Name} | {Bench.Median(perSecond[variant.Key]):N0} | {result.Errors} | {wasted} | {(exact ? "yes" : "NO")} |");
            }

            double M(string k) => Bench.Median(perSecond[k]);
            ratios.AppendLine(CultureInfo.InvariantCulture,
                $"| {workers} | {M("c") / M("a"):F2} | {M("c") / M("b"):F2} | {M("c") / M("d"):F2} | {M("e") / M("d"):F2} | {M("f") / M("b"):F2} | {M("f") / M("a"):F2} | {M("g") / M("b"):F2} | {M("h") / M("b"):F2} | {M("i") / M("b"):F2} |");
        }

        table.AppendLine();
        table.AppendLine("| workers | (c)/(a) | (c)/(b) | (c)/(d) | (e)/(d) | (f)/(b) | (f)/(a) | (g)/(b) | (h)/(b) | (i)/(b) |");
        table.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        table.Append(ratios);
        table.AppendLine();
        table.Append(await PgbenchAsync(context, duration));
        return table.ToString();
    }

    /// <summary>The variants, each bound to <paramref name="dataSource"/> (direct or through a proxy); runner retries are counted per data source.</summary>
    internal static Variant[] Variants(NpgsqlDataSource dataSource)
    {
        long runnerRetries = 0;
        var rc = RunnerFor(dataSource, IsolationLevel.ReadCommitted, () => Interlocked.Increment(ref runnerRetries));
        var rr = RunnerFor(dataSource, IsolationLevel.RepeatableRead, () => Interlocked.Increment(ref runnerRetries));
        var unmarked = RunnerFor(dataSource, IsolationLevel.ReadCommitted, () => Interlocked.Increment(ref runnerRetries), verifyOwnership: false);
        return
        [
            new("a", "(a) autocommit `UPDATE v = v + 1`", ds => async _ =>
            {
                await using var command = ds.CreateCommand("UPDATE bench_hot SET v = v + 1 WHERE id = 1");
                await command.ExecuteNonQueryAsync();
                return 0;
            }),
            new("b", "(b) hand-written FOR UPDATE read-modify-write", ds => async _ =>
            {
                await HandReadModifyWriteAsync(ds);
                return 0;
            }),
            new("c", "(c) RowLock ForUpdate via TransactionRunner", ds => async _ =>
            {
                await rc.RunAsync(async (tx, ct) =>
                {
                    var rows = await tx.LockRowsAsync<long>("SELECT v FROM bench_hot WHERE id = 1", null, RowLockClause.ForUpdate, ct);
                    await WriteAsync(tx.Connection!, tx, rows[0] + 1);
                });
                return 0;
            }, () => Interlocked.Read(ref runnerRetries)),
            new("d", "(d) naive REPEATABLE READ, Odoo-style blind retry", ds => _ => OdooStyleAsync(ds)),
            new("e", "(e) RowLock retry, REPEATABLE READ, no lock", ds => async _ =>
            {
                await rr.RunAsync(async (tx, ct) =>
                {
                    await using var select = new NpgsqlCommand("SELECT v FROM bench_hot WHERE id = 1", tx.Connection, tx);
                    var v = (long)(await select.ExecuteScalarAsync(ct))!;
                    await WriteAsync(tx.Connection!, tx, v + 1);
                });
                return 0;
            }, () => Interlocked.Read(ref runnerRetries)),
            new("f", "(f) RowLock ForUpdate via TransactionRunner, update deferred to COMMIT", ds => async _ =>
            {
                await rc.RunAsync(async (tx, ct) =>
                {
                    var rows = await tx.LockRowsAsync<long>("SELECT v FROM bench_hot WHERE id = 1", null, RowLockClause.ForUpdate, ct);
                    tx.DeferUntilCommit("UPDATE bench_hot SET v = @v WHERE id = 1", new { v = rows[0] + 1 });
                });
                return 0;
            }, () => Interlocked.Read(ref runnerRetries)),
            new("i", "(i) (f) with VerifyTransactionOwnership off (no marker savepoint)", ds => async _ =>
            {
                await unmarked.RunAsync(async (tx, ct) =>
                {
                    var rows = await tx.LockRowsAsync<long>("SELECT v FROM bench_hot WHERE id = 1", null, RowLockClause.ForUpdate, ct);
                    tx.DeferUntilCommit("UPDATE bench_hot SET v = @v WHERE id = 1", new { v = rows[0] + 1 });
                });
                return 0;
            }, () => Interlocked.Read(ref runnerRetries)),
            new("h", "(h) (b) inside a savepoint sent with BEGIN and released with COMMIT (the runner's marker, by hand)", ds => async _ =>
            {
                await HandWithSavepointAsync(ds);
                return 0;
            }),
            new("g", "(g) RowLock LockRowsAsync + ExecuteAndCommitAsync, no runner", ds => async _ =>
            {
                await using var connection = await ds.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var rows = await tx.LockRowsAsync<long>("SELECT v FROM bench_hot WHERE id = 1", null, RowLockClause.ForUpdate);
                await tx.ExecuteAndCommitAsync("UPDATE bench_hot SET v = @v WHERE id = 1", new { v = rows[0] + 1 });
                return 0;
            }),
        ];
    }

    private static TransactionRunner RunnerFor(NpgsqlDataSource dataSource, IsolationLevel isolation, Action onRetry, bool verifyOwnership = true)
    {
        var options = new TransactionRunnerOptions { IsolationLevel = isolation, VerifyTransactionOwnership = verifyOwnership };
        options.Retry.MaxRetryAttempts = 50;
        options.Retry.OnRetry = _ =>
        {
            onRetry();
            return default;
        };
        return new TransactionRunner(dataSource, options);
    }

    private static async Task WriteAsync(NpgsqlConnection connection, NpgsqlTransaction tx, long v)
    {
        await using var update = new NpgsqlCommand("UPDATE bench_hot SET v = $1 WHERE id = 1", connection, tx);
        update.Parameters.Add(new NpgsqlParameter<long> { TypedValue = v });
        await update.ExecuteNonQueryAsync();
    }

    private static async Task HandReadModifyWriteAsync(NpgsqlDataSource dataSource)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using var select = new NpgsqlCommand("SELECT v FROM bench_hot WHERE id = 1 FOR UPDATE", connection, tx);
        var v = (long)(await select.ExecuteScalarAsync())!;
        await WriteAsync(connection, tx, v + 1);
        await tx.CommitAsync();
    }

    /// <summary>(b) with what the runner's marker adds on the server: a savepoint sent with BEGIN (a subtransaction, which
    /// gets a transaction id of its own when it locks the row) and released in the COMMIT round trip.</summary>
    private static async Task HandWithSavepointAsync(NpgsqlDataSource dataSource)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        tx.Save("marker");
        await using var select = new NpgsqlCommand("SELECT v FROM bench_hot WHERE id = 1 FOR UPDATE", connection, tx);
        var v = (long)(await select.ExecuteScalarAsync())!;
        await WriteAsync(connection, tx, v + 1);
        await using var commit = new NpgsqlBatch(connection, tx) { BatchCommands = { new("RELEASE SAVEPOINT marker"), new("COMMIT") } };
        await commit.ExecuteNonQueryAsync();
    }

    /// <summary>Odoo's loop: up to 5 tries on 40001/40P01, sleeping uniform(0, 2^try) (seconds in Odoo, milliseconds here).</summary>
    private static async Task<int> OdooStyleAsync(NpgsqlDataSource dataSource)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead);
                await using var select = new NpgsqlCommand("SELECT v FROM bench_hot WHERE id = 1", connection, tx);
                var v = (long)(await select.ExecuteScalarAsync())!;
                await WriteAsync(connection, tx, v + 1);
                await tx.CommitAsync();
                return attempt;
            }
            catch (PostgresException e) when (attempt < 4 && e.SqlState is PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * Math.Pow(2, attempt + 1)));
            }
        }
    }

    private static async Task<string> PgbenchAsync(BenchContext context, TimeSpan duration)
    {
        var pgbench = new[] { "/usr/lib/postgresql/15/bin/pgbench", "/usr/bin/pgbench" }.FirstOrDefault(File.Exists);
        if (pgbench is null)
        {
            return "pgbench is not installed: no external ceiling measured.\n";
        }

        var script = Path.GetTempFileName();
        await File.WriteAllTextAsync(script, "UPDATE bench_hot SET v = v + 1 WHERE id = 1;\n");
        var builder = new NpgsqlConnectionStringBuilder(context.ConnectionString);
        var text = new StringBuilder("pgbench, same statement as (a), same server, same run:\n\n| workers | pgbench tps | RowLock (c) is measured above |\n|---:|---:|---|\n");
        foreach (var workers in new[] { 1, 4, 16, 32 })
        {
            var start = new ProcessStartInfo(pgbench) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "-n", "-f", script, "-c", workers.ToString(CultureInfo.InvariantCulture), "-j", Math.Min(workers, 2).ToString(CultureInfo.InvariantCulture),
                         "-T", Math.Max(1, (int)duration.TotalSeconds).ToString(CultureInfo.InvariantCulture), "-h", builder.Host!, "-p", builder.Port.ToString(CultureInfo.InvariantCulture),
                         "-U", builder.Username!, builder.Database! })
            {
                start.ArgumentList.Add(a);
            }

            start.Environment["PGPASSWORD"] = builder.Password ?? "";
            using var process = Process.Start(start)!;
            var output = await process.StandardOutput.ReadToEndAsync();
            await process.WaitForExitAsync();
            var tps = output.Split('\n').FirstOrDefault(l => l.StartsWith("tps = ", StringComparison.Ordinal))?.Split(' ')[2] ?? "n/a";
            text.AppendLine(CultureInfo.InvariantCulture, $"| {workers} | {tps} | |");
        }

        File.Delete(script);
        return text.ToString();
    }
}
