using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// A deferred write belongs to the attempt that deferred it: never sent with a later attempt's or another unit of
/// work's COMMIT (Npgsql reuses the transaction object on a physical connection), its values are read at the call, and
/// what the commit batch cannot honour is refused at the call.
/// </summary>
public sealed class FinalWriteBindingTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(60);

    private TransactionRunner Runner(NpgsqlDataSource? dataSource = null) =>
        new(dataSource ?? db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() });

    private async Task<string> CreateLogTableAsync()
    {
        var table = TestTables.Unique("deferred_log");
        await db.ExecuteAsync($"CREATE TABLE {table} (what text NOT NULL)");
        return table;
    }

    private async Task<string[]> LoggedAsync(string table)
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        return [.. await connection.QueryAsync<string>($"SELECT what FROM {table} ORDER BY what")];
    }

    [Fact]
    public async Task A_deferral_from_attempt_1_made_after_it_failed_is_refused_and_never_committed_by_attempt_2()
    {
        var table = await CreateLogTableAsync();
        await using var onePhysicalConnection = db.CreateDataSource(b => b.MaxPoolSize = 1); // attempt 2 gets attempt 1's connection and transaction object
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task? late = null;
        var attempts = 0;

        await Runner(onePhysicalConnection).RunAsync(async (tx, ct) =>
        {
            if (++attempts == 1)
            {
                // A task the work does not await: it defers once the attempt has failed and attempt 2 runs.
                late = Task.Run(async () =>
                {
                    await release.Task;
                    tx.DeferUntilCommit($"INSERT INTO {table} VALUES ('late write of attempt 1')");
                }, CancellationToken.None);
                await tx.Connection!.ExecuteAsync("DO $$BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END$$", transaction: tx);
            }

            release.SetResult();
            await Record.ExceptionAsync(() => late!); // wait for the late deferral before attempt 2 commits
            tx.DeferUntilCommit($"INSERT INTO {table} VALUES ('attempt 2')");
        }).WaitAsync(Guard);

        Assert.Equal(2, attempts);
        Assert.IsType<InvalidOperationException>(await Record.ExceptionAsync(() => late!));
        Assert.Equal(["attempt 2"], await LoggedAsync(table));
    }

    [Fact]
    public async Task A_deferral_made_after_its_unit_of_work_returned_is_refused_and_never_committed_by_the_next_one_on_the_pooled_connection()
    {
        var table = await CreateLogTableAsync();
        await using var onePhysicalConnection = db.CreateDataSource(b => b.MaxPoolSize = 1);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task? late = null;

        await Runner(onePhysicalConnection).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES ('first unit')", transaction: tx);
            late = Task.Run(async () =>
            {
                await release.Task;
                tx.DeferUntilCommit($"INSERT INTO {table} VALUES ('late write of the first unit')");
            }, CancellationToken.None);
        }).WaitAsync(Guard);

        await Runner(onePhysicalConnection).RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES ('second unit')", transaction: tx);
            release.SetResult();
            await Record.ExceptionAsync(() => late!); // the late deferral runs while the second unit holds the same transaction object
        }).WaitAsync(Guard);

        Assert.IsType<InvalidOperationException>(await Record.ExceptionAsync(() => late!));
        Assert.Equal(["first unit", "second unit"], await LoggedAsync(table));
    }

    [Fact]
    public async Task Arrays_and_lists_passed_to_DeferUntilCommit_are_read_at_the_call_not_at_COMMIT()
    {
        var table = TestTables.Unique("deferred_values");
        await db.ExecuteAsync($"CREATE TABLE {table} (v int NOT NULL)");

        await Runner().RunAsync((tx, ct) =>
        {
            var array = new[] { 1, 2 };
            tx.DeferUntilCommit($"INSERT INTO {table} SELECT unnest(@values)", new { values = array });
            array[0] = 100;

            var list = new List<int> { 3 };
            tx.DeferUntilCommit($"INSERT INTO {table} SELECT unnest(@values)", new { values = list });
            list[0] = 300;
            list.Add(400);
            return Task.CompletedTask;
        });

        await using var connection = await db.DataSource.OpenConnectionAsync();
        Assert.Equal([1, 2, 3], await connection.QueryAsync<int>($"SELECT v FROM {table} ORDER BY v"));
    }

    [Fact]
    public async Task A_deferred_write_Npgsql_refuses_before_sending_is_reported_as_itself_and_certain_not_as_an_unknown_commit()
    {
        var table = await db.CreateHotRowTableAsync("deferred_refused");
        var logger = new ListLogger<TransactionRunner>();
        var runner = new TransactionRunner(db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() }, logger);
        var (sql, parameters) = TooManyParameters(table);
        var runs = 0;

        var e = await Record.ExceptionAsync(() => runner.RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = 1 WHERE id = 1", transaction: tx);
            tx.DeferUntilCommit(sql, parameters);
        }).WaitAsync(Guard));

        Assert.IsNotType<CommitOutcomeUnknownException>(e);
        Assert.Contains("65535", Assert.IsAssignableFrom<NpgsqlException>(e).Message, StringComparison.Ordinal);
        Assert.Equal(1, runs);
        Assert.DoesNotContain(logger.Entries, entry => entry.Message.Contains("unknown", StringComparison.OrdinalIgnoreCase));
        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task ExecuteAndCommitAsync_refused_by_Npgsql_before_sending_throws_the_refusal_and_leaves_the_transaction_open()
    {
        var table = await db.CreateHotRowTableAsync("commit_refused");
        var (sql, parameters) = TooManyParameters(table);
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync($"UPDATE {table} SET v = 1 WHERE id = 1", transaction: tx);

        var e = await Record.ExceptionAsync(() => tx.ExecuteAndCommitAsync(sql, parameters));

        Assert.IsNotType<CommitOutcomeUnknownException>(e);
        Assert.Contains("65535", Assert.IsAssignableFrom<NpgsqlException>(e).Message, StringComparison.Ordinal);
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1", transaction: tx)); // still in the transaction
        await tx.RollbackAsync();
        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    private static (string Sql, DynamicParameters Parameters) TooManyParameters(string table)
    {
        const int count = 70_000;
        var parameters = new DynamicParameters();
        for (var i = 0; i < count; i++)
        {
            parameters.Add("p" + i, i);
        }

        return ($"UPDATE {table} SET v = v WHERE id IN ({string.Join(", ", Enumerable.Range(0, count).Select(i => "@p" + i))})", parameters);
    }

    [Fact]
    public async Task Output_parameters_and_SQL_Dapper_would_call_as_a_stored_procedure_are_refused_at_the_call()
    {
        var table = await db.CreateHotRowTableAsync("deferred_output");

        await Runner().RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = 1 WHERE id = 1", transaction: tx);
            var output = new DynamicParameters();
            output.Add("v", dbType: System.Data.DbType.Int32, direction: System.Data.ParameterDirection.Output);
            Assert.Contains("output parameter", Assert.Throws<ArgumentException>("sql", () => tx.DeferUntilCommit($"UPDATE {table} SET v = 2 WHERE id = 1 RETURNING v", output)).Message, StringComparison.Ordinal);
            Assert.Contains("stored procedure", Assert.Throws<ArgumentException>("sql", () => tx.DeferUntilCommit("refresh_totals")).Message, StringComparison.Ordinal);
        });

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var plain = await connection.BeginTransactionAsync();
        await Assert.ThrowsAsync<ArgumentException>("sql", () => plain.ExecuteAndCommitAsync("refresh_totals"));
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1", transaction: plain)); // nothing was sent
    }

    [Fact]
    public async Task Work_that_runs_PREPARE_TRANSACTION_is_told_the_transaction_is_prepared_and_how_to_roll_it_back()
    {
        if (await db.ScalarAsync<int>("SELECT current_setting('max_prepared_transactions')::int") == 0)
        {
            return; // the server refuses PREPARE TRANSACTION (max_prepared_transactions = 0): nothing to tell
        }

        var table = await db.CreateHotRowTableAsync("prepared");
        var gid = "rowlock_test_" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            var e = await Assert.ThrowsAsync<InvalidOperationException>(() => new TransactionRunner(db.DataSource).RunAsync(async (tx, ct) =>
            {
                await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = 1 WHERE id = 1", transaction: tx);
                await tx.Connection!.ExecuteAsync($"PREPARE TRANSACTION '{gid}'", transaction: tx);
            }));

            Assert.Contains("PREPARE TRANSACTION", e.Message, StringComparison.Ordinal);
            Assert.Contains($"ROLLBACK PREPARED '{gid}'", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            if (await db.ScalarAsync<long>("SELECT count(*) FROM pg_prepared_xacts WHERE gid = @gid", new { gid }) > 0)
            {
                await db.ExecuteAsync($"ROLLBACK PREPARED '{gid}'");
            }
        }
    }
}
