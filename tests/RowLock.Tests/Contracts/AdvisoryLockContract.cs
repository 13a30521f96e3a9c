using Dapper;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests.Contracts;

/// <summary>
/// What transaction-scoped advisory locks promise through one endpoint: one holder at a time, released with the
/// transaction (commit, rollback, or a transaction-held handle's dispose), a cancelled wait takes nothing. Session locks
/// need a session, which a transaction pooler does not give: they are proven on direct connections (AdvisoryLockTests).
/// Holders are counted in pg_locks on a direct connection.
/// </summary>
public abstract class AdvisoryLockContract<TEndpoint>(TEndpoint endpoint) : Contract<TEndpoint>(endpoint)
    where TEndpoint : ContractEndpoint, IEndpointAvailability
{
    private static AdvisoryLockKey UniqueKey() => AdvisoryLockKey.FromName("contract-" + Guid.NewGuid());

    [ContractFact]
    public async Task Workers_racing_for_a_one_time_job_run_it_exactly_once_per_round()
    {
        // Every worker holds its transaction open until all have tried, so they must all be open at once: as many
        // workers as the endpoint has room for, up to eight.
        var workers = Math.Min(8, Endpoint.ConcurrentTransactions);
        var runs = TestTables.Unique("sync_runs");
        await Db.ExecuteAsync($"CREATE TABLE {runs} (round int NOT NULL, worker int NOT NULL)");
        for (var round = 0; round < 20; round++)
        {
            var key = AdvisoryLockKey.FromName($"registry.sync.{round}.{Guid.NewGuid()}");
            var everyoneTried = new AsyncBarrier(workers);
            var ran = await Workers.RaceAsync(workers, async worker =>
            {
                await using var connection = await DataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var mine = await tx.TryAcquireAdvisoryLockAsync(key);
                if (mine)
                {
                    await connection.ExecuteAsync($"INSERT INTO {runs} VALUES (@round, @worker)", new { round, worker }, tx);
                }

                // The winner holds the lock until every worker has tried, as a long job would.
                await everyoneTried.SignalAndWaitAsync();
                await tx.CommitAsync();
                return mine;
            });

            Assert.Equal(1, ran.Count(r => r));
        }

        Assert.Equal(20, await Db.ScalarAsync<long>($"SELECT count(*) FROM {runs}"));
        Assert.Equal(20, await Db.ScalarAsync<long>($"SELECT count(DISTINCT round) FROM {runs}"));
    }

    [ContractFact]
    public async Task Transaction_held_handles_give_exactly_one_holder_at_a_time()
    {
        var key = UniqueKey();
        var section = await Occupancy.RaceAsync(8, 5, async () =>
        {
            var handle = await DataSource.AcquireAdvisoryLockInTransactionAsync(key, TimeSpan.FromSeconds(30));
            Assert.True(handle.HeldByTransaction);
            return handle;
        }, TimeSpan.FromMilliseconds(2));

        Assert.Equal(1, section.MostAtOnce);
        Assert.Equal(40, section.Entries);
        await using var free = await Db.DataSource.TryAcquireAdvisoryLockAsync(key);
        Assert.NotNull(free);
    }

    [ContractFact]
    public async Task Transaction_locks_are_released_by_commit_and_rollback()
    {
        var key = UniqueKey();
        await using var connection = await DataSource.OpenConnectionAsync();
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await tx.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(5));
            Assert.Equal(1, await Db.AdvisoryHoldersAsync(key));
            await tx.RollbackAsync();
        }

        Assert.Equal(0, await Db.AdvisoryHoldersAsync(key));
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await tx.AcquireAdvisoryLockAsync(key);
            await tx.CommitAsync();
        }

        Assert.Equal(0, await Db.AdvisoryHoldersAsync(key));
    }

    [ContractFact]
    public async Task Cancelling_a_waiting_transaction_acquire_throws_operation_canceled()
    {
        var key = UniqueKey();
        await using var holder = await Db.DataSource.AcquireAdvisoryLockAsync(key); // a session lock: direct
        await using var connection = await DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => tx.AcquireAdvisoryLockAsync(key, cancellationToken: cancel.Token));
        await tx.RollbackAsync();
        Assert.Equal(1, await Db.AdvisoryHoldersAsync(key));
    }
}
