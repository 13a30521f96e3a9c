using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// <see cref="TransactionRunnerOptions.VerifyTransactionOwnership"/>: on (the default) the runner's transaction runs
/// inside its marker savepoint; off, no savepoint is sent, the work's own raw <c>COMMIT; BEGIN</c> is no longer caught (as
/// documented), and what the runner still guarantees holds: an aborted transaction is never reported committed, a
/// transaction the work ended with a command of its own is refused, lost updates stay impossible.
/// </summary>
public sealed class TransactionOwnershipOptionTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private TransactionRunner Runner(bool verify) => new(db.DataSource, new TransactionRunnerOptions
    {
        TimeProvider = new InstantTimeProvider(),
        VerifyTransactionOwnership = verify,
    });

    private async Task<string> CreateTableAsync()
    {
        var table = "own_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY)");
        return table;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task The_work_runs_inside_the_marker_savepoint_only_when_ownership_is_verified(bool verify)
    {
        // As the work's first statement, ROLLBACK TO the marker undoes nothing and keeps it; without a marker it fails with 3B001.
        var run = Runner(verify).RunAsync((tx, ct) => tx.Connection!.ExecuteAsync($"ROLLBACK TO SAVEPOINT {UnitOfWorkSavepoint}", transaction: tx));

        if (verify)
        {
            await run;
        }
        else
        {
            Assert.Equal(PostgresErrorCodes.InvalidSavepointSpecification, (await Assert.ThrowsAsync<PostgresException>(() => run)).SqlState);
        }
    }

    [Fact]
    public async Task Off_a_raw_COMMIT_and_BEGIN_is_not_caught_and_both_halves_commit_as_documented()
    {
        var table = await CreateTableAsync();

        await Runner(verify: false).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
            await tx.Connection!.ExecuteAsync("COMMIT; BEGIN", transaction: tx);
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (2)", transaction: tx);
        });

        Assert.Equal(2L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }

    [Fact]
    public async Task Off_an_error_the_work_swallowed_still_rolls_back_and_is_reported_not_committed()
    {
        var table = await CreateTableAsync();
        await db.ExecuteAsync($"INSERT INTO {table} VALUES (1)");
        var runs = 0;

        var error = await Assert.ThrowsAsync<RowLockException>(() => Runner(verify: false).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (2)", transaction: tx);
            try
            {
                await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx); // 23505
            }
            catch (PostgresException)
            {
                // swallowed: the transaction is aborted
            }
        }));

        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState);
        Assert.Equal(1, runs);
        Assert.Equal(1L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }

    [Fact]
    public async Task Off_a_raw_COMMIT_sent_alone_is_still_refused()
    {
        var table = await CreateTableAsync();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner(verify: false).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
            await tx.Connection!.ExecuteAsync("COMMIT", transaction: tx);
        }));

        Assert.StartsWith("The work committed or rolled back the runner's transaction itself", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Off_concurrent_locked_increments_and_deferred_writes_lose_nothing()
    {
        var table = await db.CreateHotRowTableAsync("own_hot");
        var runner = Runner(verify: false);
        const int workers = 8, each = 15;

        await Task.WhenAll(Enumerable.Range(0, workers).Select(w => Task.Run(async () =>
        {
            for (var i = 0; i < each; i++)
            {
                await runner.RunAsync(async (tx, ct) =>
                {
                    var v = (await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate, ct))[0];
                    if (i % 2 == 0)
                    {
                        tx.DeferUntilCommit($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 });
                    }
                    else
                    {
                        await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx);
                    }
                });
            }
        })));

        Assert.Equal(workers * each, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    private const string UnitOfWorkSavepoint = "rowlock_unit_of_work";
}
