using Dapper;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// The PgBouncer endpoint itself: a real PgBouncer in transaction pooling mode, 4 server connections shared by all
/// clients. Every transaction-scoped guarantee is proven through it by the contracts' <c>...ThroughPgBouncer</c> runs
/// (RowLockContract, AdvisoryLockContract, TransactionRunnerContract).
/// </summary>
public sealed class PgBouncerTests(PgBouncerEndpoint bouncer) : IClassFixture<PgBouncerEndpoint>
{
    [PgBouncerFact]
    public async Task Clients_really_share_a_few_server_connections()
    {
        var backends = await Workers.RaceAsync(12, async _ =>
        {
            await using var connection = await bouncer.DataSource.OpenConnectionAsync();
            return await connection.ExecuteScalarAsync<int>("SELECT pg_backend_pid() FROM pg_sleep(0.05)");
        });
        Assert.InRange(backends.Distinct().Count(), 1, bouncer.ConcurrentTransactions);
        Assert.Equal(4, bouncer.ConcurrentTransactions);
    }
}
