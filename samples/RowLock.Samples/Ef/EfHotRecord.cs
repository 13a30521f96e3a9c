using Microsoft.EntityFrameworkCore;
using Npgsql;
using RowLock.EntityFrameworkCore;
using RowLock.Samples.Lab;
using RowLock.Samples.Scenarios;

namespace RowLock.Samples.Ef;

/// <summary><see cref="HotRecord"/> written with EF Core: same table, same verdict.</summary>
public sealed class EfHotRecord : HotRecord
{
    // Naive: load the entity, change it, SaveChanges. EF writes back the total it read; concurrent saves overwrite each other.
    protected override async Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var factory = LabContext.Factory(dataSource);
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, async _ =>
        {
            for (var i = 0; i < options.Iterations; i++)
            {
                await errors.RunAsync(async () =>
                {
                    await using var db = await factory.CreateDbContextAsync(cancellationToken);
                    var row = await db.HotTotals.SingleAsync(h => h.Id == 1, cancellationToken);
                    row.Total++;
                    await db.SaveChangesAsync(cancellationToken);
                });
            }

            return 0;
        }));
        return await ResultAsync(dataSource, options, errors, 0, elapsed);
    }

    // RowLock: the same LINQ with WithRowLock(ForUpdate) inside DbContextTransactionRunner, which gives each attempt a
    // fresh context, calls SaveChanges and commits. The second worker waits for the row, then reads the new total.
    protected override async Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var retries = new StrongBox<int>();
        var runner = new DbContextTransactionRunner<LabContext>(LabContext.Factory(dataSource), CountingOptions(retries));
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, async _ =>
        {
            for (var i = 0; i < options.Iterations; i++)
            {
                await errors.RunAsync(() => runner.RunAsync(async (db, ct) =>
                {
                    var row = await db.HotTotals.Where(h => h.Id == 1).WithRowLock(RowLockClause.ForUpdate).SingleAsync(ct);
                    row.Total++;
                }, cancellationToken));
            }

            return 0;
        }));
        return await ResultAsync(dataSource, options, errors, retries.Value, elapsed);
    }
}
