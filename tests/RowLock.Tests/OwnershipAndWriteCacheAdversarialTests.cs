using System.Text;
using Dapper;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Npgsql;
using RowLock.EntityFrameworkCore;
using RowLock.Internal;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Review of <see cref="TransactionRunnerOptions.VerifyTransactionOwnership"/> (what docs/transaction-runner.md says
/// still holds with it off) and of the cache of validated final-write SQL (<see cref="ValidatedWrites"/>). Each runner
/// test runs with the option on and off, so a failure shows whether it is the option's or older.
/// </summary>
public sealed class OwnershipAndWriteCacheAdversarialTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private const string Inject40001 = "DO $$BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END$$";

    private TransactionRunner Runner(bool verify) => new(db.DataSource, new TransactionRunnerOptions
    {
        TimeProvider = new InstantTimeProvider(),
        VerifyTransactionOwnership = verify,
    });

    private async Task<string> CreateTableAsync()
    {
        var table = "ownadv_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)");
        return table;
    }

    private Task<long> CountAsync(string table) => db.ScalarAsync<long>($"SELECT count(*) FROM {table}");

    private async Task<int[]> IdsAsync(string sql)
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        return [.. await connection.QueryAsync<int>(sql)];
    }

    // ---- Feature 1: VerifyTransactionOwnership ------------------------------------------------------------------------

    /// <summary>
    /// <c>ROLLBACK AND CHAIN</c> sent alone leaves the session in a new transaction, so Npgsql does not see it leave the
    /// runner's: only the marker catches it. Found by the review: with the option off the runner committed the second half
    /// and reported success while the first half was rolled back, which docs/transaction-runner.md then did not say.
    /// </summary>
    [Fact]
    public async Task A_ROLLBACK_AND_CHAIN_sent_alone_is_refused_and_nothing_committed_when_ownership_is_verified()
    {
        var table = await CreateTableAsync();
        var runs = 0;

        var error = await Record.ExceptionAsync(() => Runner(verify: true).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)", transaction: tx);
            await tx.Connection!.ExecuteAsync("ROLLBACK AND CHAIN", transaction: tx);
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (2)", transaction: tx);
        }));

        Assert.IsType<InvalidOperationException>(error);
        Assert.Equal(0L, await CountAsync(table));
        Assert.Equal(1, runs);
    }

    /// <summary>The documented price of turning the check off: the runner cannot tell a chained transaction from its own.</summary>
    [Fact]
    public async Task Off_a_ROLLBACK_AND_CHAIN_is_not_caught_the_first_half_is_lost_and_the_second_commits_as_documented()
    {
        var table = await CreateTableAsync();

        await Runner(verify: false).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)", transaction: tx);
            await tx.Connection!.ExecuteAsync("ROLLBACK AND CHAIN", transaction: tx);
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (2)", transaction: tx);
        });

        Assert.Equal(new[] { 2 }, await IdsAsync($"SELECT id FROM {table}"));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_ROLLBACK_sent_alone_is_refused(bool verify)
    {
        var table = await CreateTableAsync();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => Runner(verify).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)", transaction: tx);
            await tx.Connection!.ExecuteAsync("ROLLBACK", transaction: tx);
        }));

        Assert.StartsWith("The work committed or rolled back the runner's transaction itself", error.Message, StringComparison.Ordinal);
        Assert.Equal(0L, await CountAsync(table));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_deferred_write_that_fails_with_23505_throws_it_and_commits_nothing(bool verify)
    {
        var table = await CreateTableAsync();
        await db.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)");
        var runs = 0;

        var error = await Assert.ThrowsAsync<PostgresException>(() => Runner(verify).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (2)", transaction: tx);
            tx.DeferUntilCommit($"INSERT INTO {table} (id) VALUES (3)");
            tx.DeferUntilCommit($"INSERT INTO {table} (id) VALUES (1)");
        }));

        Assert.Equal(PostgresErrorCodes.UniqueViolation, error.SqlState);
        Assert.Equal(1, runs);
        Assert.Equal(1L, await CountAsync(table));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_deferred_write_that_fails_with_40001_is_retried_and_applied_once(bool verify)
    {
        var table = await CreateTableAsync();
        var runs = 0;

        await Runner(verify).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id, v) VALUES (@runs, @runs)", new { runs }, tx);
            tx.DeferUntilCommit($"UPDATE {table} SET v = v + 10 WHERE id = @runs", new { runs });
            if (runs == 1)
            {
                tx.DeferUntilCommit(Inject40001);
            }
        });

        Assert.Equal(2, runs);
        Assert.Equal(new[] { 12 }, await IdsAsync($"SELECT v FROM {table} ORDER BY id"));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_deferred_write_with_the_wrong_row_count_throws_UnexpectedRowCount_and_commits_nothing(bool verify)
    {
        var table = await CreateTableAsync();
        await db.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1), (2)");
        var runs = 0;

        var error = await Assert.ThrowsAsync<UnexpectedRowCountException>(() => Runner(verify).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (3)", transaction: tx);
            tx.DeferUntilCommit($"UPDATE {table} SET v = 7 WHERE id <= 2", expectedRows: 1);
        }));

        Assert.Equal(2, error.ActualRows);
        Assert.Equal(1, runs);
        Assert.Equal(2L, await CountAsync(table));
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table} WHERE v = 7"));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task An_error_swallowed_before_a_deferred_write_is_reported_as_swallowed_and_nothing_commits(bool verify)
    {
        var table = await CreateTableAsync();
        await db.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)");
        var runs = 0;

        var error = await Assert.ThrowsAsync<RowLockException>(() => Runner(verify).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (2)", transaction: tx);
            try
            {
                await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)", transaction: tx);
            }
            catch (PostgresException)
            {
            }

            tx.DeferUntilCommit($"UPDATE {table} SET v = 1 WHERE id = 1");
        }));

        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState);
        Assert.Equal(1, runs);
        Assert.Equal(1L, await CountAsync(table));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_backend_terminated_while_the_work_is_idle_before_commit_is_rerun_and_applied_once(bool verify)
    {
        var table = await CreateTableAsync();
        var runs = 0;

        await Runner(verify).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id, v) VALUES (@runs, 0)", new { runs }, tx);
            tx.DeferUntilCommit($"UPDATE {table} SET v = 1 WHERE id = @runs", new { runs });
            if (runs == 1)
            {
                await db.TerminateBackendAsync(tx.Connection!.ProcessID);
            }
        });

        Assert.Equal(2, runs);
        Assert.Equal(new[] { 2 }, await IdsAsync($"SELECT id FROM {table} WHERE v = 1"));
        Assert.Equal(1L, await CountAsync(table));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_backend_killed_while_a_deferred_write_runs_is_a_certain_rollback_and_rerun(bool verify)
    {
        var table = await CreateTableAsync();
        var runs = 0;
        var pid = 0;
        var killer = db.TerminateWhenSleepingAsync(() => Volatile.Read(ref pid));

        await Runner(verify).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (@runs)", new { runs }, tx);
            if (runs == 1)
            {
                Volatile.Write(ref pid, tx.Connection!.ProcessID);
                tx.DeferUntilCommit($"UPDATE {table} SET v = 1 FROM (SELECT pg_sleep(30)) AS s WHERE id = 1");
            }
        }).WaitAsync(TimeSpan.FromSeconds(60));
        await killer.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(2, runs);
        Assert.Equal(new[] { 2 }, await IdsAsync($"SELECT id FROM {table}"));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_backend_killed_while_COMMIT_is_in_flight_is_an_unknown_outcome_and_never_retried(bool verify)
    {
        var table = await db.CreateSlowCommitTableAsync("ownadv_slow");
        var runs = 0;
        var pid = 0;
        var killer = db.TerminateWhenSleepingAsync(() => Volatile.Read(ref pid));

        await Assert.ThrowsAsync<CommitOutcomeUnknownException>(() => Runner(verify).RunAsync((tx, ct) =>
        {
            runs++;
            Volatile.Write(ref pid, tx.Connection!.ProcessID);
            tx.DeferUntilCommit($"INSERT INTO {table} VALUES (1)");
            return Task.CompletedTask;
        }).WaitAsync(TimeSpan.FromSeconds(60)));
        await killer.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(1, runs);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_work_that_defers_nothing_still_never_commits_an_aborted_transaction(bool verify)
    {
        var table = await CreateTableAsync();
        await db.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)");

        // A list of parameter objects with no element defers no write: the batch is the check and COMMIT alone.
        var error = await Assert.ThrowsAsync<RowLockException>(() => Runner(verify).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (2)", transaction: tx);
            try
            {
                await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)", transaction: tx);
            }
            catch (PostgresException)
            {
            }

            tx.DeferUntilCommit($"UPDATE {table} SET v = @v WHERE id = 1", Array.Empty<object>());
        }));

        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState);
        Assert.Equal(1L, await CountAsync(table));
    }

    /// <summary>
    /// Not the option's, found on the way: with a list of parameter objects that has no element, no write is recorded and
    /// the batch was COMMIT alone, which on an aborted transaction rolls back without an error (CommitCheck.None assumed
    /// "the batch has a write of the caller's"). Such a batch now checks that the transaction is not aborted first.
    /// </summary>
    [Fact]
    public async Task ExecuteAndCommitAsync_with_no_parameter_objects_never_reports_an_aborted_transaction_committed()
    {
        var table = await CreateTableAsync();
        await db.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync($"INSERT INTO {table} (id) VALUES (2)", transaction: tx);
        try
        {
            await connection.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)", transaction: tx);
        }
        catch (PostgresException)
        {
        }

        var error = await Record.ExceptionAsync(() => tx.ExecuteAndCommitAsync($"UPDATE {table} SET v = @v WHERE id = 1", Array.Empty<object>()));

        Assert.True(error is not null, "ExecuteAndCommitAsync returned (= committed, as documented) on an aborted transaction");
        Assert.Equal(1L, await CountAsync(table));
    }

    [Theory]
    [InlineData("false", false)]
    [InlineData("true", true)]
    public async Task The_configuration_key_binds_and_decides_the_marker(string value, bool expected)
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes($$"""{ "RowLock": { "VerifyTransactionOwnership": {{value}} } }""")))
            .Build();
        var services = new ServiceCollection();
        services.AddSingleton(db.DataSource);
        services.AddRowLock(configuration.GetSection("RowLock"));
        await using var provider = services.BuildServiceProvider();

        provider.GetRequiredService<IStartupValidator>().Validate();
        var runner = provider.GetRequiredService<TransactionRunner>();
        Assert.Equal(expected, runner.Options.VerifyTransactionOwnership);

        var marked = await runner.RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync("SAVEPOINT probe", transaction: tx);
            try
            {
                await tx.Connection!.ExecuteAsync("ROLLBACK TO SAVEPOINT rowlock_unit_of_work", transaction: tx);
                return true;
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidSavepointSpecification)
            {
                await tx.Connection!.ExecuteAsync("ROLLBACK TO SAVEPOINT probe", transaction: tx);
                return false;
            }
        });
        Assert.Equal(expected, marked);
    }

    // ---- Feature 1, EF Core runner -------------------------------------------------------------------------------------

    private sealed class BareContext(DbContextOptions<BareContext> options) : DbContext(options);

    private sealed class BareFactory(NpgsqlDataSource dataSource) : IDbContextFactory<BareContext>
    {
        public BareContext CreateDbContext() => new(new DbContextOptionsBuilder<BareContext>().UseNpgsql(dataSource).Options);
    }

    private static Task<int> RawAsync(DbContext ctx, string sql, CancellationToken ct) => ctx.Database.ExecuteSqlRawAsync(sql, ct);

    private DbContextTransactionRunner<BareContext> EfRunner(bool verify) =>
        new(new BareFactory(db.DataSource), new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider(), VerifyTransactionOwnership = verify });

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Ef_runner_an_error_the_work_swallowed_is_reported_and_nothing_commits(bool verify)
    {
        var table = await CreateTableAsync();
        await db.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)");
        var runs = 0;

        var error = await Assert.ThrowsAsync<RowLockException>(() => EfRunner(verify).RunAsync(async (ctx, ct) =>
        {
            runs++;
            await RawAsync(ctx, $"INSERT INTO {table} (id) VALUES (2)", ct);
            try
            {
                await RawAsync(ctx, $"INSERT INTO {table} (id) VALUES (1)", ct);
            }
            catch (PostgresException)
            {
            }
        }));

        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, error.SqlState);
        Assert.Equal(1, runs);
        Assert.Equal(1L, await CountAsync(table));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Ef_runner_a_40001_is_retried_and_applied_once(bool verify)
    {
        var table = await CreateTableAsync();
        var runs = 0;

        await EfRunner(verify).RunAsync(async (ctx, ct) =>
        {
            runs++;
            await RawAsync(ctx, $"INSERT INTO {table} (id) VALUES ({runs})", ct);
            if (runs == 1)
            {
                await ctx.Database.ExecuteSqlRawAsync(Inject40001, ct);
            }
        });

        Assert.Equal(2, runs);
        Assert.Equal(new[] { 2 }, await IdsAsync($"SELECT id FROM {table}"));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Ef_runner_a_ROLLBACK_AND_CHAIN_is_refused_only_when_ownership_is_verified(bool verify)
    {
        var table = await CreateTableAsync();

        var error = await Record.ExceptionAsync(() => EfRunner(verify).RunAsync(async (ctx, ct) =>
        {
            await RawAsync(ctx, $"INSERT INTO {table} (id) VALUES (1)", ct);
            await ctx.Database.ExecuteSqlRawAsync("ROLLBACK AND CHAIN", ct);
            await RawAsync(ctx, $"INSERT INTO {table} (id) VALUES (2)", ct);
        }));

        if (verify)
        {
            Assert.IsType<InvalidOperationException>(error);
            Assert.Equal(0L, await CountAsync(table));
        }
        else
        {
            // Documented: with the check off the chained transaction is taken for the runner's own.
            Assert.Null(error);
            Assert.Equal(new[] { 2 }, await IdsAsync($"SELECT id FROM {table}"));
        }
    }

    // ---- Feature 2: the cache of validated write SQL -------------------------------------------------------------------

    /// <summary>A text cached on a session with standard_conforming_strings on is still refused on a session with it off.</summary>
    [Fact]
    public async Task A_cached_write_with_a_backslash_is_still_refused_where_standard_conforming_strings_is_off()
    {
        var table = await CreateTableAsync();
        await db.ExecuteAsync($"INSERT INTO {table} (id) VALUES (1)");
        var sql = $"UPDATE {table} SET v = length('a\\') WHERE id = 1 /* {Guid.NewGuid():N} */";

        await Runner(verify: true).RunAsync((tx, ct) =>
        {
            tx.DeferUntilCommit(sql);
            return Task.CompletedTask;
        });
        Assert.Equal(2, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1")); // length of a\ : read with standard_conforming_strings on

        var deferred = await Assert.ThrowsAsync<ArgumentException>(() => Runner(verify: false).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync("SET LOCAL standard_conforming_strings = off", transaction: tx);
            tx.DeferUntilCommit(sql);
        }));
        Assert.Equal("sql", deferred.ParamName);

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await connection.ExecuteAsync("SET standard_conforming_strings = off");
        try
        {
            await using var tx = await connection.BeginTransactionAsync();
            var direct = await Assert.ThrowsAsync<ArgumentException>(() => tx.ExecuteAndCommitAsync(sql));
            Assert.Equal("sql", direct.ParamName);
        }
        finally
        {
            await connection.ExecuteAsync("RESET standard_conforming_strings");
        }

        Assert.Equal(2, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1")); // length of a\ : read with standard_conforming_strings on
    }

    [Fact]
    public async Task A_cached_text_still_gets_the_expectedRows_checks()
    {
        var table = await CreateTableAsync();
        var select = $"SELECT v FROM {table} /* {Guid.NewGuid():N} */";
        var withCte = $"WITH x AS (SELECT 1) UPDATE {table} SET v = 1 /* {Guid.NewGuid():N} */";
        ValidatedWrites.Validate(select, "sql");
        ValidatedWrites.Validate(withCte, "sql");

        await Runner(verify: false).RunAsync((tx, ct) =>
        {
            Assert.Equal("sql", Assert.Throws<ArgumentException>(() => tx.DeferUntilCommit(select, expectedRows: 1)).ParamName);
            Assert.Equal("sql", Assert.Throws<ArgumentException>(() => tx.DeferUntilCommit(withCte, expectedRows: 1)).ParamName);
            Assert.Throws<ArgumentOutOfRangeException>(() => tx.DeferUntilCommit($"UPDATE {table} SET v = 2", expectedRows: -1));
            return Task.CompletedTask;
        });
    }

    [Fact]
    public async Task A_cached_text_does_not_let_ExecuteAndCommitAsync_commit_a_runners_transaction()
    {
        var table = await CreateTableAsync();
        var sql = $"INSERT INTO {table} (id) VALUES (1) /* {Guid.NewGuid():N} */";
        ValidatedWrites.Validate(sql, "sql");

        var refusal = await Record.ExceptionAsync(() => Runner(verify: false).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id) VALUES (2)", transaction: tx);
            await tx.ExecuteAndCommitAsync(sql, cancellationToken: ct);
        }));

        Assert.IsType<InvalidOperationException>(refusal);
        Assert.StartsWith("This transaction belongs to a TransactionRunner", refusal.Message, StringComparison.Ordinal);
        Assert.Equal(0L, await CountAsync(table));
    }

    /// <summary>Many threads validate accepted texts, refused look-alikes and a flood that makes the cache start over: a refused text is never let through.</summary>
    [Fact]
    public void Concurrent_validation_with_the_cache_starting_over_never_accepts_a_refused_text()
    {
        var tag = Guid.NewGuid().ToString("N");
        var accepted = Enumerable.Range(0, 64).Select(i => $"UPDATE t SET v = {i} /* {tag} */").ToArray();
        var refused = accepted.SelectMany(a => new[] { a + "; DROP TABLE t", "COMMIT /* " + a + " */", a + " -- x\n;", "copy t from stdin /* " + a + " */" }).ToArray();
        var leaks = 0;

        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, worker =>
        {
            for (var round = 0; round < 400; round++)
            {
                ValidatedWrites.Validate(accepted[(worker + round) % accepted.Length], "sql");
                ValidatedWrites.Validate($"UPDATE t SET v = {(worker * 1000) + round} /* flood {tag} */", "sql");
                try
                {
                    ValidatedWrites.Validate(refused[(worker * 7 + round) % refused.Length], "sql");
                    Interlocked.Increment(ref leaks);
                }
                catch (ArgumentException)
                {
                }
            }
        });

        Assert.Equal(0, leaks);
        Assert.InRange(ValidatedWrites.Count, 0, ValidatedWrites.Capacity * 2);
    }
}
