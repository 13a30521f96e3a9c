using Dapper;
using Npgsql;
using RowLock.Samples.Lab;

namespace RowLock.Samples.Scenarios;

/// <summary>Several cron workers post draft invoices in batches while users keep working.</summary>
public class CronBatch : Scenario
{
    protected const int Batch = 50;

    public override string Name => "cron-batch";

    public override string Invariant => "every invoice posted exactly once";

    protected static int Invoices(LabOptions options) => Math.Max(Batch, options.Iterations * 40);

    protected override async Task SetUpAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync("""
            DROP TABLE IF EXISTS invoices;
            CREATE TABLE invoices (id bigint PRIMARY KEY, state text NOT NULL DEFAULT 'draft', posts int NOT NULL DEFAULT 0);
            """);
        await connection.ExecuteAsync("INSERT INTO invoices (id) SELECT g FROM generate_series(1, @count) g", new { count = Invoices(options) });
    }

    // Naive: pick the next drafts without a lock (no SKIP LOCKED). Workers pick the same drafts and post them twice;
    // their UPDATEs of overlapping batches also deadlock (40P01), which the cron job logs and goes on.
    protected override async Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, async _ =>
        {
            // Each successful batch posts at least one draft, so this bound is never reached while batches succeed.
            for (var attempt = 0; attempt < Invoices(options); attempt++)
            {
                var picked = await errors.RunAsync(async () =>
                {
                    await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
                    await using var tx = await connection.BeginTransactionAsync(cancellationToken);
                    var ids = (await connection.QueryAsync<long>("SELECT id FROM invoices WHERE state = 'draft' ORDER BY id LIMIT 50", transaction: tx)).ToArray();
                    if (ids.Length > 0)
                    {
                        await connection.ExecuteAsync("UPDATE invoices SET state = 'posted', posts = posts + 1 WHERE id = ANY(@ids)", new { ids }, tx);
                    }

                    await tx.CommitAsync(cancellationToken);
                    return ids.Length;
                }, fallback: -1);
                if (picked == 0)
                {
                    break;
                }
            }

            return 0;
        }));
        return await ResultAsync(dataSource, options, errors, 0, elapsed);
    }

    // RowLock: ClaimRowsAsync = FOR UPDATE SKIP LOCKED LIMIT n. Each worker takes drafts nobody else holds, never
    // waits for another worker, and posts them in the same transaction that holds them.
    protected override async Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var retries = new StrongBox<int>();
        var runner = CountingRunner(dataSource, retries);
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, async _ =>
        {
            for (var attempt = 0; attempt < Invoices(options); attempt++)
            {
                var posted = await errors.RunAsync(() => runner.RunAsync(async (tx, ct) =>
                {
                    var ids = await tx.ClaimRowsAsync<long>("SELECT id FROM invoices WHERE state = 'draft' ORDER BY id", null, Batch, ct);
                    await tx.Connection!.ExecuteAsync("UPDATE invoices SET state = 'posted', posts = posts + 1 WHERE id = ANY(@ids)", new { ids = ids.ToArray() }, tx);
                    return ids.Count;
                }, cancellationToken), fallback: -1);
                if (posted == 0)
                {
                    break;
                }
            }

            return 0;
        }));
        return await ResultAsync(dataSource, options, errors, retries.Value, elapsed);
    }

    private static async Task<SideResult> ResultAsync(NpgsqlDataSource dataSource, LabOptions options, ErrorCounter errors, int retries, TimeSpan elapsed)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        var (twice, unposted) = await connection.QuerySingleAsync<(long, long)>("SELECT count(*) FILTER (WHERE posts > 1), count(*) FILTER (WHERE posts = 0) FROM invoices");
        return new SideResult(errors, retries, twice == 0 && unposted == 0, $"{twice} of {Invoices(options)} posted twice", elapsed);
    }
}
