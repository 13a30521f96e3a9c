using Dapper;
using Npgsql;
using RowLock.Samples.Lab;

namespace RowLock.Samples.Scenarios;

/// <summary>Workers consume stock from FIFO cost layers (100 + 100 + 100 units); each wants 100.</summary>
public class FifoStock : Scenario
{
    protected const int Wanted = 100;
    private const int Initial = 300;

    public override string Name => "fifo-stock";

    public override string Invariant => "no layer < 0, consumed + remaining = 300, min(workers,3) sales per round";

    private sealed record Layer(long Id, int RemainingQty);

    protected override Task SetUpAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        dataSource.CreateCommand("""
            DROP TABLE IF EXISTS cost_layers;
            CREATE TABLE cost_layers (id bigserial PRIMARY KEY, product text NOT NULL, created timestamptz NOT NULL, remaining_qty int NOT NULL);
            """).ExecuteNonQueryAsync(cancellationToken);

    private static Task RestockAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken) =>
        dataSource.CreateCommand("""
            DELETE FROM cost_layers;
            INSERT INTO cost_layers (product, created, remaining_qty) VALUES
              ('widget', now() - interval '3 days', 100), ('widget', now() - interval '2 days', 100), ('widget', now() - interval '1 day', 100);
            """).ExecuteNonQueryAsync(cancellationToken);

    private static int Rounds(LabOptions options) => Math.Clamp(options.Iterations / 5, 1, 20);

    // Naive: check the stock, then consume it, without a lock. Every worker sees 300 and sells: stock goes negative.
    protected override async Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        await RoundsAsync(dataSource, options, null, cancellationToken, async _ =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await using var tx = await connection.BeginTransactionAsync(cancellationToken);
            var layers = (await connection.QueryAsync<Layer>(
                "SELECT id, remaining_qty AS RemainingQty FROM cost_layers WHERE product = 'widget' AND remaining_qty > 0 ORDER BY created, id", transaction: tx)).ToList();
            var sold = await ConsumeAsync(connection, tx, layers);
            await tx.CommitAsync(cancellationToken);
            return sold;
        });

    // RowLock: lock the layers FOR UPDATE in one consistent order (oldest first) before reading them. Concurrent
    // sales queue on the first layer; each then sees what is really left, so exactly three sales succeed. One order
    // for everybody means no deadlock.
    protected override async Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var retries = new StrongBox<int>();
        var runner = CountingRunner(dataSource, retries);
        return await RoundsAsync(dataSource, options, retries, cancellationToken, _ => runner.RunAsync(async (tx, ct) =>
        {
            var layers = await tx.LockRowsAsync<Layer>(
                "SELECT id, remaining_qty AS RemainingQty FROM cost_layers WHERE product = @product AND remaining_qty > 0 ORDER BY created, id",
                new { product = "widget" }, RowLockClause.ForUpdate, ct);
            return await ConsumeAsync(tx.Connection!, tx, layers); // false = shortage: nothing written, the commit is empty
        }, cancellationToken));
    }

    private static async Task<bool> ConsumeAsync(NpgsqlConnection connection, NpgsqlTransaction tx, IReadOnlyList<Layer> layers)
    {
        if (layers.Sum(l => l.RemainingQty) < Wanted)
        {
            return false;
        }

        var wanted = Wanted;
        foreach (var layer in layers)
        {
            var take = Math.Min(wanted, layer.RemainingQty);
            await connection.ExecuteAsync("UPDATE cost_layers SET remaining_qty = remaining_qty - @take WHERE id = @id", new { take, id = layer.Id }, tx);
            wanted -= take;
            if (wanted == 0)
            {
                break;
            }
        }

        return true;
    }

    protected static async Task<SideResult> RoundsAsync(NpgsqlDataSource dataSource, LabOptions options, StrongBox<int>? retries, CancellationToken cancellationToken, Func<int, Task<bool>> sell)
    {
        var ok = true;
        var worst = "";
        var errors = new ErrorCounter();
        var elapsed = TimeSpan.Zero;
        for (var round = 0; round < Rounds(options); round++)
        {
            await RestockAsync(dataSource, cancellationToken);
            var (sales, time) = await TimeAsync(() => RaceAsync(options.Workers, worker => errors.RunAsync(() => sell(worker), false)));
            elapsed += time;
            var sold = sales.Count(s => s);
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            var (remaining, negative) = await connection.QuerySingleAsync<(long, long)>("SELECT sum(remaining_qty), count(*) FILTER (WHERE remaining_qty < 0) FROM cost_layers");
            var holds = negative == 0 && (sold * Wanted) + remaining == Initial && sold == Math.Min(options.Workers, Initial / Wanted);
            if (!holds && ok)
            {
                worst = $"round {round + 1}: {sold} sold, {remaining} left, {negative} layers < 0";
            }

            ok &= holds;
        }

        return new SideResult(errors, retries?.Value ?? 0, ok, ok ? $"{Rounds(options)} rounds exact" : worst, elapsed);
    }
}
