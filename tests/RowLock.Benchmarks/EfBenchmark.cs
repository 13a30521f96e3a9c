using System.Globalization;
using System.Text;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using RowLock.EntityFrameworkCore;

namespace RowLock.Benchmarks;

/// <summary>6: the same EF Core unit of work, locking with WithRowLock against FromSql with a hand-written FOR UPDATE.</summary>
internal static class EfBenchmark
{
    public sealed class BenchRow
    {
        public int Id { get; set; }

        public int V { get; set; }
    }

    public sealed class BenchDb(DbContextOptions<BenchDb> options) : DbContext(options)
    {
        public DbSet<BenchRow> Rows => Set<BenchRow>();

        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            var row = modelBuilder.Entity<BenchRow>().ToTable("bench_ef_row");
            row.Property(r => r.Id).HasColumnName("id").ValueGeneratedNever();
            row.Property(r => r.V).HasColumnName("v");
        }
    }

    private static DbContextOptions<BenchDb> Options(NpgsqlDataSource dataSource) =>
        new DbContextOptionsBuilder<BenchDb>().UseNpgsql(dataSource).UseRowLock().Options;

    public static Func<Task> FromSqlForUpdate(NpgsqlDataSource dataSource)
    {
        var options = Options(dataSource);
        return async () =>
        {
            await using var db = new BenchDb(options);
            await using var tx = await db.Database.BeginTransactionAsync();
            var rows = await db.Rows.FromSql($"SELECT id, v FROM bench_ef_row WHERE id = {1} FOR UPDATE").ToListAsync();
            rows[0].V++;
            await db.SaveChangesAsync();
            await tx.CommitAsync();
        };
    }

    public static Func<Task> WithRowLock(NpgsqlDataSource dataSource)
    {
        var options = Options(dataSource);
        return async () =>
        {
            await using var db = new BenchDb(options);
            await using var tx = await db.Database.BeginTransactionAsync();
            var id = 1;
            var rows = await db.Rows.Where(r => r.Id == id).WithRowLock(RowLockClause.ForUpdate).ToListAsync();
            rows[0].V++;
            await db.SaveChangesAsync();
            await tx.CommitAsync();
        };
    }

    public static async Task<string> RunAsync(BenchContext context)
    {
        await context.ExecuteAsync("DROP TABLE IF EXISTS bench_ef_row; CREATE TABLE bench_ef_row (id int PRIMARY KEY, v int NOT NULL); INSERT INTO bench_ef_row VALUES (1, 0);");
        var sides = new (string Name, Func<Task> Op)[]
        {
            ("EF FromSql + hand-written FOR UPDATE", FromSqlForUpdate(context.DataSource)),
            ("EF LINQ + WithRowLock(ForUpdate)", WithRowLock(context.DataSource)),
        };
        var ops = context.Quick ? 300 : 2000;
        var rounds = context.Quick ? 5 : 10;
        foreach (var side in sides)
        {
            await Bench.MicrosPerOpAsync(200, side.Op); // warm up (EF compiles and caches the queries)
        }

        var micros = sides.Select(_ => new List<double>()).ToArray();
        for (var r = 0; r < rounds; r++)
        {
            for (var s = 0; s < sides.Length; s++)
            {
                var index = (s + r) % sides.Length;
                micros[index].Add(await Bench.MicrosPerOpAsync(ops, sides[index].Op));
            }
        }

        var roundTrips = await CountRoundTripsAsync(context);
        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture,
            $"A new context, BEGIN, lock one row `FOR UPDATE` and read it as a tracked entity, change it, SaveChanges, COMMIT; no contention; {rounds} alternating rounds of {ops} operations.");
        table.AppendLine();
        table.AppendLine("| side | µs/op (median of rounds) | ratio to FromSql | round trips/op |");
        table.AppendLine("|---|---:|---:|---:|");
        for (var s = 0; s < sides.Length; s++)
        {
            var ratio = Bench.Median(micros[s].Zip(micros[0], (a, b) => a / b));
            table.AppendLine(CultureInfo.InvariantCulture, $"| {sides[s].Name} | {Bench.Median(micros[s]):F0} | {ratio:F3} | {roundTrips[s]:F2} |");
        }

        return table.ToString();
    }

    private static async Task<double[]> CountRoundTripsAsync(BenchContext context)
    {
        var target = new NpgsqlConnectionStringBuilder(context.ConnectionString);
        await using var proxy = new RoundTripProxy(target.Host!, target.Port);
        await using var proxied = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(context.ConnectionString) { Host = "127.0.0.1", Port = proxy.Port, MaxPoolSize = 1 }.ConnectionString);
        Func<Task>[] ops = [FromSqlForUpdate(proxied), WithRowLock(proxied)];
        var result = new double[ops.Length];
        for (var s = 0; s < ops.Length; s++)
        {
            await ops[s]();
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
