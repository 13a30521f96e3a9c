using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Npgsql;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;
using RowLock.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>DbContextTransactionRunner: a fresh context per attempt, SaveChanges and COMMIT by the runner, the core's retry policy.</summary>
public sealed class UnitOfWorkTests(EfFixture ef) : IClassFixture<EfFixture>
{
    private const string Inject40001 = "DO $$BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END$$";

    private async Task ResetCounterAsync() => await ef.Database.ExecuteAsync("DELETE FROM counters; INSERT INTO counters VALUES (1, 0)");

    private Task<int> CounterAsync() => ef.Database.ScalarAsync<int>("SELECT \"Value\" FROM counters WHERE \"Id\" = 1");

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task VerifyTransactionOwnership_decides_whether_the_work_runs_inside_the_marker_savepoint_and_a_retried_decrement_stays_exact(bool verify)
    {
        await ResetCounterAsync();
        var runner = new DbContextTransactionRunner<ShopContext>(ef.Factory, new TransactionRunnerOptions { VerifyTransactionOwnership = verify });
        var attempts = 0;
        var marked = new List<bool>();

        await runner.RunAsync(async (db, ct) =>
        {
            // First, before any data is touched: ROLLBACK TO the marker undoes nothing and keeps it; without one it fails
            // with 3B001, which the probe's own savepoint absorbs.
            await db.Database.ExecuteSqlRawAsync("SAVEPOINT probe", ct);
            try
            {
                await db.Database.ExecuteSqlRawAsync("ROLLBACK TO SAVEPOINT rowlock_unit_of_work", ct);
                marked.Add(true);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidSavepointSpecification)
            {
                await db.Database.ExecuteSqlRawAsync("ROLLBACK TO SAVEPOINT probe", ct);
                marked.Add(false);
            }

            var counter = await db.Counters.SingleAsync(c => c.Id == 1, ct);
            counter.Value--;
            await db.SaveChangesAsync(ct);
            if (++attempts == 1)
            {
                await db.Database.ExecuteSqlRawAsync(Inject40001, ct);
            }
        });

        Assert.Equal(2, attempts);
        Assert.Equal(-1, await CounterAsync());
        Assert.Equal([verify, verify], marked);
    }

    [Fact]
    public async Task Efcore_pg_1734_a_retried_decrement_ends_at_minus_1_with_a_fresh_context_per_attempt()
    {
        await ResetCounterAsync();
        var logger = new ListLogger<DbContextTransactionRunner<ShopContext>>();
        var runner = new DbContextTransactionRunner<ShopContext>(ef.Factory, logger: logger);
        var attempts = 0;

        await runner.RunAsync(async (db, ct) =>
        {
            var counter = await db.Counters.SingleAsync(c => c.Id == 1, ct);
            counter.Value--;
            await db.SaveChangesAsync(ct);
            if (++attempts == 1)
            {
                await db.Database.ExecuteSqlRawAsync(Inject40001, ct); // fails after the UPDATE, before COMMIT
            }
        });

        Assert.Equal(2, attempts);
        Assert.Equal(-1, await CounterAsync());
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Information && e.Message.Contains("attempt 1 failed with 40001", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Efcore_pg_1734_the_same_scenario_through_EnableRetryOnFailure_ends_at_minus_2()
    {
        await ResetCounterAsync();
        var options = new DbContextOptionsBuilder<ShopContext>().UseNpgsql(ef.Database.DataSource, o => o.EnableRetryOnFailure(3)).UseRowLock().Options;
        await using var db = new ShopContext(options);
        var attempts = 0;

        await db.Database.CreateExecutionStrategy().ExecuteAsync(async () =>
        {
            await using var tx = await db.Database.BeginTransactionAsync();
            var counter = await db.Counters.SingleAsync(c => c.Id == 1); // the retry gets the tracked instance back, already at -1
            counter.Value--;
            await db.SaveChangesAsync();
            if (++attempts == 1)
            {
                await db.Database.ExecuteSqlRawAsync(Inject40001);
            }

            await tx.CommitAsync();
        });

        Assert.Equal(2, attempts);
        Assert.Equal(-2, await CounterAsync()); // efcore.pg#1734: one decrement asked for, two applied
    }

    [Fact]
    public async Task Two_workers_locking_in_opposite_orders_deadlock_and_the_victim_is_retried_whole()
    {
        await ef.Database.ExecuteAsync("DELETE FROM counters; INSERT INTO counters VALUES (1, 0), (2, 0)");
        var runner = new DbContextTransactionRunner<ShopContext>(ef.Factory);
        var bothHoldOne = new AsyncBarrier(2);
        var runs = 0;

        await Workers.RaceAsync(2, worker => runner.RunAsync(async (db, ct) =>
        {
            Interlocked.Increment(ref runs);
            var (first, second) = worker == 0 ? (1, 2) : (2, 1);
            var a = await db.Counters.Where(c => c.Id == first).WithRowLock(RowLockClause.ForUpdate).SingleAsync(ct);
            await bothHoldOne.SignalAndWaitAsync(ct); // one-shot: a retry goes straight through
            var b = await db.Counters.Where(c => c.Id == second).WithRowLock(RowLockClause.ForUpdate).SingleAsync(ct);
            a.Value++;
            b.Value++;
        }));

        Assert.Equal(3, runs); // one deadlock victim ran twice
        Assert.Equal(4, await ef.Database.ScalarAsync<long>("SELECT sum(\"Value\") FROM counters"));
    }

    [Fact]
    public async Task A_connection_lost_before_commit_is_retried_on_a_new_connection()
    {
        await ResetCounterAsync();
        var runner = new DbContextTransactionRunner<ShopContext>(ef.Factory);
        var attempts = 0;
        await runner.RunAsync(async (db, ct) =>
        {
            (await db.Counters.SingleAsync(c => c.Id == 1, ct)).Value += 10;
            if (++attempts == 1)
            {
                await using var killer = await ef.Database.DataSource.OpenConnectionAsync(ct);
                var pid = ((NpgsqlConnection)db.Database.GetDbConnection()).ProcessID;
                await new NpgsqlCommand($"SELECT pg_terminate_backend({pid})", killer).ExecuteScalarAsync(ct);
            }
        });

        Assert.Equal(2, attempts);
        Assert.Equal(10, await CounterAsync());
        NpgsqlConnection.ClearAllPools();
    }

    [Fact]
    public async Task When_every_attempt_conflicts_it_throws_RetryLimitExceeded_after_the_configured_attempts()
    {
        var clock = new InstantTimeProvider();
        var options = new TransactionRunnerOptions { TimeProvider = clock, Retry = { MaxRetryAttempts = 3 } };
        var runner = new DbContextTransactionRunner<ShopContext>(ef.Factory, options);
        var e = await Assert.ThrowsAsync<RetryLimitExceededException>(() => runner.RunAsync((db, ct) => db.Database.ExecuteSqlRawAsync(Inject40001, ct)));
        Assert.Equal(4, e.Attempts);
        Assert.Equal(PostgresErrorCodes.SerializationFailure, e.SqlState);
        Assert.Equal(3, clock.Delays.Count);
    }

    [Fact]
    public async Task The_runner_calls_SaveChanges_and_commits_and_an_exception_rolls_everything_back()
    {
        await ResetCounterAsync();
        var runner = new DbContextTransactionRunner<ShopContext>(ef.Factory);
        await runner.RunAsync(async (db, ct) => (await db.Counters.SingleAsync(c => c.Id == 1, ct)).Value = 5);
        Assert.Equal(5, await CounterAsync());

        await Assert.ThrowsAsync<ApplicationException>(() => runner.RunAsync(async (db, ct) =>
        {
            (await db.Counters.SingleAsync(c => c.Id == 1, ct)).Value = 6;
            await db.SaveChangesAsync(ct);
            throw new ApplicationException("business rule");
        }));
        Assert.Equal(5, await CounterAsync());
    }

    [Fact]
    public async Task It_refuses_to_nest_to_run_in_a_context_with_a_transaction_or_with_EFs_retrying_strategy()
    {
        var runner = new DbContextTransactionRunner<ShopContext>(ef.Factory);
        await Assert.ThrowsAsync<InvalidOperationException>(() => runner.RunAsync((_, ct) => runner.RunAsync((_, _) => Task.CompletedTask, ct)));

        var withTransaction = new DbContextTransactionRunner<ShopContext>(new Factory<ShopContext>(() =>
        {
            var db = ef.CreateContext();
            db.Database.BeginTransaction();
            return db;
        }));
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => withTransaction.RunAsync((_, _) => Task.CompletedTask));
        Assert.Contains("already has a transaction", e.Message, StringComparison.Ordinal);

        var retrying = new DbContextOptionsBuilder<ShopContext>().UseNpgsql(ef.Database.DataSource, o => o.EnableRetryOnFailure()).UseRowLock().Options;
        var withStrategy = new DbContextTransactionRunner<ShopContext>(new Factory<ShopContext>(() => new ShopContext(retrying)));
        e = await Assert.ThrowsAsync<InvalidOperationException>(() => withStrategy.RunAsync((_, _) => Task.CompletedTask));
        Assert.Contains("EnableRetryOnFailure", e.Message, StringComparison.Ordinal);

        var shared = ef.CreateContext();
        var sameContext = new DbContextTransactionRunner<ShopContext>(new Factory<ShopContext>(() => shared));
        var attempts = 0;
        e = await Assert.ThrowsAsync<InvalidOperationException>(() => sameContext.RunAsync(async (db, ct) =>
        {
            if (++attempts == 1)
            {
                await db.Database.ExecuteSqlRawAsync(Inject40001, ct);
            }
        }));
        Assert.Contains("same context", e.Message, StringComparison.Ordinal);
    }
}
