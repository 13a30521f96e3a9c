using Dapper;
using Npgsql;
using RowLock.Samples.Lab;

namespace RowLock.Samples.Scenarios;

/// <summary>Many workers adjust the same row (an order total, a stock quantity).</summary>
public class HotRecord : Scenario
{
    public override string Name => "hot-record";

    public override string Invariant => "final total = workers x iterations";

    protected override Task SetUpAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        dataSource.CreateCommand("DROP TABLE IF EXISTS hot_record; CREATE TABLE hot_record (id int PRIMARY KEY, total int NOT NULL); INSERT INTO hot_record VALUES (1, 0);")
            .ExecuteNonQueryAsync(cancellationToken);

    // Naive: read, add in C#, write back, under READ COMMITTED. Two workers read the same total and one increment is lost.
    protected override async Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, async _ =>
        {
            for (var i = 0; i < options.Iterations; i++)
            {
                await errors.RunAsync(async () =>
                {
                    await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
                    await using var tx = await connection.BeginTransactionAsync(cancellationToken);
                    var total = await connection.QuerySingleAsync<int>("SELECT total FROM hot_record WHERE id = 1", transaction: tx);
                    await connection.ExecuteAsync("UPDATE hot_record SET total = @total WHERE id = 1", new { total = total + 1 }, tx);
                    await tx.CommitAsync(cancellationToken);
                });
            }

            return 0;
        }));
        return await ResultAsync(dataSource, options, errors, 0, elapsed);
    }

    // RowLock: lock the row FOR UPDATE before reading it. The second worker waits for the first to commit and then
    // reads the new total, so no increment is lost and no 40001 can happen. The runner retries anything left.
    // The update is deferred to COMMIT: it travels in the commit round trip, so the row stays locked one round trip
    // less and the next worker gets it sooner.
    protected override async Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var retries = new StrongBox<int>();
        var runner = CountingRunner(dataSource, retries);
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, async _ =>
        {
            for (var i = 0; i < options.Iterations; i++)
            {
                await errors.RunAsync(() => runner.RunAsync(async (tx, ct) =>
                {
                    var rows = await tx.LockRowsAsync<int>("SELECT total FROM hot_record WHERE id = @id", new { id = 1 }, RowLockClause.ForUpdate, ct);
                    tx.DeferUntilCommit("UPDATE hot_record SET total = @total WHERE id = 1", new { total = rows[0] + 1 });
                }, cancellationToken));
            }

            return 0;
        }));
        return await ResultAsync(dataSource, options, errors, retries.Value, elapsed);
    }

    protected static async Task<SideResult> ResultAsync(NpgsqlDataSource dataSource, LabOptions options, ErrorCounter errors, int retries, TimeSpan elapsed)
    {
        var expected = options.Workers * options.Iterations;
        var total = (int)(await dataSource.CreateCommand("SELECT total FROM hot_record").ExecuteScalarAsync())!;
        return new SideResult(errors, retries, total == expected, $"total {total} of {expected}", elapsed);
    }
}
