using System.Globalization;
using System.Text;
using Dapper;
using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>
/// Where the client-side overhead of benchmark 1 goes: the same lock-update-commit built up one layer at a time
/// (Dapper instead of ExecuteScalar, then the helper's checks, then the runner around hand-written work, then both),
/// each with its bytes allocated and client CPU per operation. Not part of the default run: <c>--only overhead-profile</c>.
/// </summary>
internal static class OverheadProfile
{
    public static async Task<string> RunAsync(BenchContext context)
    {
        await context.ExecuteAsync("DROP TABLE IF EXISTS bench_row; CREATE TABLE bench_row (id int PRIMARY KEY, v int NOT NULL); INSERT INTO bench_row VALUES (1, 0);");
        var dataSource = context.DataSource;
        var runner = new TransactionRunner(dataSource);
        var layers = new (string Name, Func<Task> Op)[]
        {
            ("hand-written Npgsql", OverheadBenchmark.Hand(dataSource)),
            ("hand-written, Dapper QueryAsync<int> for the SELECT", async () =>
            {
                await using var connection = await dataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var rows = (await connection.QueryAsync<int>(new CommandDefinition("SELECT v FROM bench_row WHERE id = 1\nFOR UPDATE", null, tx))).AsList();
                await Update(connection, tx, rows[0] + 1);
                await tx.CommitAsync();
            }),
            ("LockRowsAsync helper", OverheadBenchmark.Helper(dataSource)),
            ("TransactionRunner around hand-written work", () => runner.RunAsync(async (tx, ct) =>
            {
                await using var select = new NpgsqlCommand("SELECT v FROM bench_row WHERE id = 1 FOR UPDATE", tx.Connection, tx);
                var v = (int)(await select.ExecuteScalarAsync(ct))!;
                await Update(tx.Connection!, tx, v + 1);
            })),
            ("TransactionRunner with the helper", OverheadBenchmark.Runner(dataSource)),
        };
        var ops = context.Quick ? 300 : 1000;
        var table = new StringBuilder();
        table.AppendLine("| layer | bytes allocated/op | client CPU µs/op (median of 5) |");
        table.AppendLine("|---|---:|---:|");
        foreach (var (name, op) in layers)
        {
            await Bench.MicrosPerOpAsync(100, op);
            var bytes = await Bench.BytesPerOpAsync(ops, op);
            var cpu = new List<double>();
            for (var r = 0; r < 5; r++)
            {
                var before = Environment.CpuUsage.TotalTime;
                await Bench.MicrosPerOpAsync(ops / 2, op);
                cpu.Add((Environment.CpuUsage.TotalTime - before).TotalMicroseconds / (ops / 2));
            }

            table.AppendLine(CultureInfo.InvariantCulture, $"| {name} | {bytes:N0} | {Bench.Median(cpu):F0} |");
        }

        table.AppendLine();
        table.AppendLine(PreflightCost());
        if (Environment.GetEnvironmentVariable("ROWLOCK_ALLOC_TYPES") is { } which)
        {
            foreach (var (name, op) in layers.Where((_, i) => which.Contains(i.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)))
            {
                table.AppendLine(await AllocationTypes.ProfileAsync(name, int.TryParse(Environment.GetEnvironmentVariable("ROWLOCK_ALLOC_OPS"), out var n) ? n : 4000, op));
            }
        }

        return table.ToString();
    }

    /// <summary>
    /// The SQL check alone, without I/O: RowLock's internal validation (lexer and rules) against the cached entry point
    /// the helpers call, reached by reflection (the benchmark sees only the public API). Thread CPU time and bytes per call.
    /// </summary>
    private static string PreflightCost()
    {
        const string sql = "SELECT v FROM bench_row WHERE id = 1";
        var assembly = typeof(RowLockClause).Assembly;
        var validate = assembly.GetType("RowLock.Internal.SqlText")!.GetMethod("ValidateSelect")!
            .CreateDelegate<Func<string, string, RowLockClause, bool, object>>();
        var cached = assembly.GetType("RowLock.Internal.ValidatedSelects")?.GetMethod("Validate")?
            .CreateDelegate<Func<string, string, RowLockClause, bool, object>>();
        var result = new StringBuilder("| SQL check of `" + sql + "`, FOR UPDATE | bytes/call | CPU ns/call |\n|---|---:|---:|\n");
        result.AppendLine(Measure("lex and check (SqlText.ValidateSelect)", () => _ = validate(sql, "selectSql", RowLockClause.ForUpdate, false)));
        if (cached is not null)
        {
            result.AppendLine(Measure("cached (ValidatedSelects.Validate, a hit)", () => _ = cached(sql, "selectSql", RowLockClause.ForUpdate, false)));
        }

        return result.ToString();

        static string Measure(string name, Action action)
        {
            const int calls = 200_000;
            for (var i = 0; i < 1000; i++)
            {
                action();
            }

            var bytes = GC.GetAllocatedBytesForCurrentThread();
            var cpu = Environment.CpuUsage.TotalTime;
            for (var i = 0; i < calls; i++)
            {
                action();
            }

            var elapsed = Environment.CpuUsage.TotalTime - cpu;
            return string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {(GC.GetAllocatedBytesForCurrentThread() - bytes) / (double)calls:F0} | {elapsed.TotalNanoseconds / calls:F0} |");
        }
    }

    private static async Task Update(NpgsqlConnection connection, NpgsqlTransaction tx, int v)
    {
        await using var update = new NpgsqlCommand("UPDATE bench_row SET v = $1 WHERE id = 1", connection, tx);
        update.Parameters.Add(new NpgsqlParameter<int> { TypedValue = v });
        await update.ExecuteNonQueryAsync();
    }
}
