using Microsoft.EntityFrameworkCore;
using Npgsql;
using RowLock.EntityFrameworkCore;
using RowLock.Samples.Lab;
using RowLock.Samples.Scenarios;

namespace RowLock.Samples.Ef;

/// <summary><see cref="OneTimeJob"/> written with EF Core: same table, same verdict.</summary>
public sealed class EfOneTimeJob : OneTimeJob
{
    // Naive: "if not done yet, do it" with AnyAsync, Add and SaveChanges. Every worker checks before any has finished.
    protected override Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var factory = LabContext.Factory(dataSource);
        return RoundsAsync(dataSource, options, cancellationToken, async (round, worker) =>
        {
            await using var db = await factory.CreateDbContextAsync(cancellationToken);
            await SyncIfNotDoneAsync(db, round, worker, cancellationToken);
            await db.SaveChangesAsync(cancellationToken);
        });
    }

    // RowLock: db.Database.TryAcquireAdvisoryLockAsync on the runner's transaction. One worker gets the lock; the others
    // skip at once. The winner re-checks "done?" under the lock; the lock goes with the runner's commit.
    protected override Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var runner = new DbContextTransactionRunner<LabContext>(LabContext.Factory(dataSource));
        return RoundsAsync(dataSource, options, cancellationToken, (round, worker) => runner.RunAsync(async (db, ct) =>
        {
            if (await db.Database.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("registry.sync"), cancellationToken: ct))
            {
                await SyncIfNotDoneAsync(db, round, worker, ct);
            }
        }, cancellationToken));
    }

    private static async Task SyncIfNotDoneAsync(LabContext db, int round, int worker, CancellationToken cancellationToken)
    {
        if (!await db.RegistrySyncs.AnyAsync(s => s.Round == round, cancellationToken))
        {
            await db.Database.ExecuteSqlRawAsync("SELECT pg_sleep(0.02)", cancellationToken); // the sync
            db.RegistrySyncs.Add(new RegistrySync { Round = round, Worker = worker });
        }
    }
}
