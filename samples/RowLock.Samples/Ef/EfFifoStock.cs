using Microsoft.EntityFrameworkCore;
using Npgsql;
using RowLock.EntityFrameworkCore;
using RowLock.Samples.Lab;
using RowLock.Samples.Scenarios;

namespace RowLock.Samples.Ef;

/// <summary><see cref="FifoStock"/> written with EF Core: same table, same verdict.</summary>
public sealed class EfFifoStock : FifoStock
{
    // Naive: load the layers, take from them in C#, SaveChanges. Every worker sees 300 and sells: oversold.
    protected override Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var factory = LabContext.Factory(dataSource);
        return RoundsAsync(dataSource, options, null, cancellationToken, async _ =>
        {
            await using var db = await factory.CreateDbContextAsync(cancellationToken);
            var layers = await Layers(db).ToListAsync(cancellationToken);
            if (!Consume(layers))
            {
                return false;
            }

            await db.SaveChangesAsync(cancellationToken);
            return true;
        });
    }

    // RowLock: the same query with WithRowLock(ForUpdate), oldest first for everybody (so no deadlock), in the runner.
    protected override Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var retries = new StrongBox<int>();
        var runner = new DbContextTransactionRunner<LabContext>(LabContext.Factory(dataSource), CountingOptions(retries));
        return RoundsAsync(dataSource, options, retries, cancellationToken, _ => runner.RunAsync(async (db, ct) =>
            Consume(await Layers(db).WithRowLock(RowLockClause.ForUpdate).ToListAsync(ct)), cancellationToken)); // false = shortage: nothing changed
    }

    private static IQueryable<CostLayer> Layers(LabContext db) =>
        db.CostLayers.Where(l => l.Product == "widget" && l.RemainingQty > 0).OrderBy(l => l.Created).ThenBy(l => l.Id);

    private static bool Consume(List<CostLayer> layers)
    {
        if (layers.Sum(l => l.RemainingQty) < Wanted)
        {
            return false;
        }

        var wanted = Wanted;
        foreach (var layer in layers)
        {
            var take = Math.Min(wanted, layer.RemainingQty);
            layer.RemainingQty -= take;
            wanted -= take;
            if (wanted == 0)
            {
                break;
            }
        }

        return true;
    }
}
