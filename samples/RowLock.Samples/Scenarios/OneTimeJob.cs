using Dapper;
using Npgsql;
using RowLock.Samples.Lab;

namespace RowLock.Samples.Scenarios;

/// <summary>After a deploy every worker starts at once and each wants to run the same one-time sync.</summary>
public class OneTimeJob : Scenario
{
    public override string Name => "one-time-job";

    public override string Invariant => "exactly one sync per round";

    protected static int Rounds(LabOptions options) => Math.Clamp(options.Iterations / 5, 1, 20);

    protected override Task SetUpAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        dataSource.CreateCommand("DROP TABLE IF EXISTS registry_syncs; CREATE TABLE registry_syncs (round int NOT NULL, worker int NOT NULL);")
            .ExecuteNonQueryAsync(cancellationToken);

    // Naive: "if not done yet, do it". Every worker checks before any has finished, so they all run the sync.
    protected override Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        RoundsAsync(dataSource, options, cancellationToken, async (round, worker) =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await using var tx = await connection.BeginTransactionAsync(cancellationToken);
            await SyncIfNotDoneAsync(connection, tx, round, worker);
            await tx.CommitAsync(cancellationToken);
        });

    // RowLock: a transaction-scoped advisory lock on the job's name. One worker gets it; the others skip at once (no
    // waiting, no 40001). The winner re-checks "done?" under the lock, so a late worker that gets the lock after the
    // winner committed sees the sync is done and skips too.
    protected override Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        RoundsAsync(dataSource, options, cancellationToken, async (round, worker) =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await using var tx = await connection.BeginTransactionAsync(cancellationToken);
            if (await tx.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("registry.sync"), cancellationToken: cancellationToken))
            {
                await SyncIfNotDoneAsync(connection, tx, round, worker);
            }

            await tx.CommitAsync(cancellationToken); // releases the advisory lock
        });

    private static async Task SyncIfNotDoneAsync(NpgsqlConnection connection, NpgsqlTransaction tx, int round, int worker)
    {
        if (!await connection.ExecuteScalarAsync<bool>("SELECT EXISTS (SELECT 1 FROM registry_syncs WHERE round = @round)", new { round }, tx))
        {
            await connection.ExecuteAsync("SELECT pg_sleep(0.02); INSERT INTO registry_syncs VALUES (@round, @worker)", new { round, worker }, tx); // the sync
        }
    }

    protected static async Task<SideResult> RoundsAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken, Func<int, int, Task> work)
    {
        var errors = new ErrorCounter();
        var elapsed = TimeSpan.Zero;
        for (var round = 0; round < Rounds(options); round++)
        {
            var (_, time) = await TimeAsync(() => RaceAsync(options.Workers, worker => errors.RunAsync(() => work(round, worker))));
            elapsed += time;
        }

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var runs = (await connection.QueryAsync<long>("SELECT count(*) FROM registry_syncs GROUP BY round")).ToArray();
        var exact = runs.Length == Rounds(options) && runs.All(r => r == 1);
        return new SideResult(errors, 0, exact, $"{runs.Sum()} syncs in {Rounds(options)} rounds", elapsed);
    }
}
