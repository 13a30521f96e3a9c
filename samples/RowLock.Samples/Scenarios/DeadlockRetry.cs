using Dapper;
using Npgsql;
using RowLock.Samples.Lab;

namespace RowLock.Samples.Scenarios;

/// <summary>Transfers between two accounts in both directions at once: opposite lock orders deadlock.</summary>
public sealed class DeadlockRetry : Scenario
{
    private const int Opening = 1_000;

    public override string Name => "deadlock-retry";

    public override string Invariant => "every transfer applied, total balance conserved";

    private static int Transfers(LabOptions options) => Math.Clamp(options.Iterations / 10, 1, 10);

    protected override Task SetUpAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        dataSource.CreateCommand("DROP TABLE IF EXISTS bank_accounts; CREATE TABLE bank_accounts (id int PRIMARY KEY, balance int NOT NULL); INSERT INTO bank_accounts VALUES (1, 1000), (2, 1000);")
            .ExecuteNonQueryAsync(cancellationToken);

    private static async Task TransferAsync(NpgsqlConnection connection, NpgsqlTransaction tx, int from, int to)
    {
        await connection.ExecuteAsync("UPDATE bank_accounts SET balance = balance - 1 WHERE id = @from", new { from }, tx);
        await connection.ExecuteAsync("SELECT pg_sleep(0.002)", transaction: tx); // some work between the two updates
        await connection.ExecuteAsync("UPDATE bank_accounts SET balance = balance + 1 WHERE id = @to", new { to }, tx);
    }

    private static (int From, int To) Direction(int worker, int i) => (worker + i) % 2 == 0 ? (1, 2) : (2, 1);

    // Naive: lock in the order the request names the accounts, no retry. Deadlocks reach the caller and transfers are lost.
    protected override async Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, async worker =>
        {
            for (var i = 0; i < Transfers(options); i++)
            {
                var (from, to) = Direction(worker, i);
                await errors.RunAsync(async () =>
                {
                    await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
                    await using var tx = await connection.BeginTransactionAsync(cancellationToken);
                    await TransferAsync(connection, tx, from, to);
                    await tx.CommitAsync(cancellationToken);
                });
            }

            return 0;
        }));
        return await ResultAsync(dataSource, options, errors, 0, elapsed);
    }

    // RowLock: the same transfer inside TransactionRunner. The deadlock victim is rolled back and re-run whole, after an
    // exponential, jittered backoff, so every transfer lands. (Locking both accounts with LockRowsByKeyAsync first, in
    // key order, would avoid the deadlock altogether; here the runner shows what retry does for what is left.)
    protected override async Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var retries = new StrongBox<int>();
        var runner = CountingRunner(dataSource, retries);
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, async worker =>
        {
            for (var i = 0; i < Transfers(options); i++)
            {
                var (from, to) = Direction(worker, i);
                await errors.RunAsync(() => runner.RunAsync((tx, ct) => TransferAsync(tx.Connection!, tx, from, to), cancellationToken));
            }

            return 0;
        }));
        return await ResultAsync(dataSource, options, errors, retries.Value, elapsed);
    }

    private static async Task<SideResult> ResultAsync(NpgsqlDataSource dataSource, LabOptions options, ErrorCounter errors, int retries, TimeSpan elapsed)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        var balances = (await connection.QueryAsync<int>("SELECT balance FROM bank_accounts ORDER BY id")).ToArray();
        var expectedMoves = options.Workers * Transfers(options);
        var applied = expectedMoves - errors.Count;

        // Each worker alternates directions, so with no lost transfer account 1 ends where it began (+/- one per odd worker).
        var conserved = balances.Sum() == 2 * Opening;
        return new SideResult(errors, retries, conserved && errors.Count == 0, $"{applied} of {expectedMoves} transfers, total {balances.Sum()}", elapsed);
    }
}
