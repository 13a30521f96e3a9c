using System.Data;
using Microsoft.EntityFrameworkCore;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;
using RowLock.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>DbContextTransactionRunner takes its snapshot where hand-written EF code does: at the work's first query.</summary>
public sealed class UnitOfWorkSnapshotTests(EfFixture ef) : IClassFixture<EfFixture>
{
    [Fact]
    public async Task A_row_committed_before_the_works_first_query_is_seen_and_locked_on_the_first_attempt_under_repeatable_read()
    {
        await ef.Database.ExecuteAsync("DELETE FROM counters WHERE \"Id\" = 7; INSERT INTO counters VALUES (7, 0)");
        var options = new TransactionRunnerOptions { IsolationLevel = IsolationLevel.RepeatableRead, TimeProvider = new InstantTimeProvider() };
        var runner = new DbContextTransactionRunner<ShopContext>(ef.Factory, options);
        var attempts = 0;

        var seen = await runner.RunAsync(async (db, ct) =>
        {
            if (++attempts == 1)
            {
                await ef.Database.ExecuteAsync("UPDATE counters SET \"Value\" = 41 WHERE \"Id\" = 7"); // committed after BEGIN
            }

            var counter = await db.Counters.Where(c => c.Id == 7).WithRowLock(RowLockClause.ForUpdate).SingleAsync(ct);
            var value = counter.Value;
            counter.Value++;
            return value;
        });

        Assert.Equal(1, attempts); // no 40001 and no retry
        Assert.Equal(41, seen);
        Assert.Equal(42, await ef.Database.ScalarAsync<int>("SELECT \"Value\" FROM counters WHERE \"Id\" = 7"));
    }
}
