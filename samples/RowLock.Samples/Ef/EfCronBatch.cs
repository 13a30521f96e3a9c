using System.Collections.Concurrent;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using RowLock.EntityFrameworkCore;
using RowLock.Samples.Lab;
using RowLock.Samples.Scenarios;

namespace RowLock.Samples.Ef;

/// <summary>
/// <see cref="CronBatch"/> written with EF Core. EF writes back the <c>posts</c> value it computed, so two workers posting
/// the same invoice both write 1; the lab counts postings where they happen (the invoice sent to the customer), after
/// each committed batch.
/// </summary>
public sealed class EfCronBatch : CronBatch
{
    // Naive: load the next drafts, mark them posted, SaveChanges. Workers load the same drafts and post them twice.
    protected override async Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var factory = LabContext.Factory(dataSource);
        var sent = new ConcurrentDictionary<long, int>();
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, async _ =>
        {
            // Each successful batch posts at least one draft, so this bound is never reached while batches succeed.
            for (var attempt = 0; attempt < Invoices(options); attempt++)
            {
                var picked = await errors.RunAsync(async () =>
                {
                    await using var db = await factory.CreateDbContextAsync(cancellationToken);
                    var drafts = await Drafts(db).Take(Batch).ToListAsync(cancellationToken);
                    Post(drafts);
                    await db.SaveChangesAsync(cancellationToken);
                    Sent(sent, drafts);
                    return drafts.Count;
                }, fallback: -1);
                if (picked == 0)
                {
                    break;
                }
            }

            return 0;
        }));
        return await ResultAsync(dataSource, options, sent, errors, 0, elapsed);
    }

    // RowLock: ClaimRowsAsync = FOR UPDATE SKIP LOCKED LIMIT n on the LINQ query, inside the runner. Each worker gets
    // drafts nobody else holds and posts them in the transaction that holds them.
    protected override async Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var retries = new StrongBox<int>();
        var runner = new DbContextTransactionRunner<LabContext>(LabContext.Factory(dataSource), CountingOptions(retries));
        var sent = new ConcurrentDictionary<long, int>();
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, async _ =>
        {
            for (var attempt = 0; attempt < Invoices(options); attempt++)
            {
                var posted = await errors.RunAsync(async () =>
                {
                    var invoices = await runner.RunAsync(async (db, ct) =>
                    {
                        var claimed = await Drafts(db).ClaimRowsAsync(Batch, ct);
                        Post(claimed);
                        return claimed;
                    }, cancellationToken);
                    Sent(sent, invoices); // committed: only now are they sent
                    return invoices.Count;
                }, fallback: -1);
                if (posted == 0)
                {
                    break;
                }
            }

            return 0;
        }));
        return await ResultAsync(dataSource, options, sent, errors, retries.Value, elapsed);
    }

    private static IQueryable<Invoice> Drafts(LabContext db) => db.Invoices.Where(i => i.State == "draft").OrderBy(i => i.Id);

    private static void Post(List<Invoice> invoices)
    {
        foreach (var invoice in invoices)
        {
            invoice.State = "posted";
            invoice.Posts++;
        }
    }

    private static void Sent(ConcurrentDictionary<long, int> sent, List<Invoice> invoices)
    {
        foreach (var invoice in invoices)
        {
            sent.AddOrUpdate(invoice.Id, 1, (_, n) => n + 1);
        }
    }

    private static async Task<SideResult> ResultAsync(NpgsqlDataSource dataSource, LabOptions options, ConcurrentDictionary<long, int> sent, ErrorCounter errors,
        int retries, TimeSpan elapsed)
    {
        var drafts = (long)(await dataSource.CreateCommand("SELECT count(*) FROM invoices WHERE state = 'draft'").ExecuteScalarAsync())!;
        var twice = sent.Count(s => s.Value > 1);
        var holds = twice == 0 && drafts == 0 && sent.Count == Invoices(options);
        return new SideResult(errors, retries, holds, $"{twice} of {Invoices(options)} posted twice", elapsed);
    }
}
