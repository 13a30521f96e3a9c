using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Final writes under attack: which statement failed in the commit round trip when the writes are statements Npgsql
/// has no statement type for, parameters as Dapper gives them to Npgsql, and deferrals racing the commit.
/// </summary>
public sealed class FinalWriteAdversarialTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private TransactionRunner Runner() =>
        new(db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() });

    /// <summary>A table whose inserts sleep at COMMIT (a deferred constraint trigger), once: the first insert only.</summary>
    private async Task<string> CreateSlowCommitTableAsync(string prefix)
    {
        var table = prefix + "_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"""
            CREATE TABLE {table} (id int);
            CREATE SEQUENCE {table}_calls;
            CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('{table}_calls') = 1 THEN PERFORM pg_sleep(30); END IF;
                RETURN NULL;
            END $$;
            CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_slow();
            """);
        return table;
    }

    [Fact]
    public async Task ExecuteAndCommitAsync_with_an_empty_list_of_parameter_objects_and_the_backend_killed_during_commit_reports_an_unknown_outcome()
    {
        // Dapper runs a statement once per element of a list of parameter objects: an empty list sends no write, and the
        // batch is the not-aborted check and COMMIT. A session killed during that COMMIT may have committed: it is not a certain rollback.
        var table = await CreateSlowCommitTableAsync("final_empty_list");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        var pid = connection.ProcessID;
        var killer = db.TerminateWhenSleepingAsync(() => pid);

        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
        var e = await Record.ExceptionAsync(() => tx.ExecuteAndCommitAsync($"INSERT INTO {table} VALUES (@id)", Array.Empty<object>()).WaitAsync(TimeSpan.FromSeconds(60)));
        await killer.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.IsType<CommitOutcomeUnknownException>(e);
    }

    [Theory]
    [InlineData("NOTIFY final_channel")]
    [InlineData("LOCK TABLE {other} IN ROW EXCLUSIVE MODE")]
    [InlineData("SET LOCAL work_mem = '8MB'")]
    [InlineData("DO $$ BEGIN PERFORM 1; END $$")]
    [InlineData("CALL {other}_proc()")]
    [InlineData("TRUNCATE {other}")]
    [InlineData("CREATE TABLE {other}_new (id int)")]
    [InlineData("SELECT * INTO {other}_copy FROM {other}")]
    [InlineData("SELECT pg_catalog.pg_sleep(0) WHERE false")]
    [InlineData("INSERT INTO {other} VALUES (1) RETURNING id")]
    [InlineData("MERGE INTO {other} t USING (SELECT 2 AS id) s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)")]
    public async Task A_final_write_of_any_kind_then_the_backend_killed_during_commit_is_an_unknown_outcome_never_a_rollback(string write)
    {
        var table = await CreateSlowCommitTableAsync("final_kinds");
        var other = table + "_o";
        await db.ExecuteAsync($"CREATE TABLE {other} (id int); CREATE PROCEDURE {other}_proc() LANGUAGE sql AS $$ SELECT 1 $$");
        var sql = write.Replace("{other}", other, StringComparison.Ordinal);
        await using var connection = await db.DataSource.OpenConnectionAsync();
        var pid = connection.ProcessID;
        var killer = db.TerminateWhenSleepingAsync(() => pid);

        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
        var e = await Record.ExceptionAsync(() => tx.ExecuteAndCommitAsync(sql).WaitAsync(TimeSpan.FromSeconds(60)));
        await killer.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.IsType<CommitOutcomeUnknownException>(e);
    }

    [Theory]
    [InlineData("NOTIFY final_channel")]
    [InlineData("DO $$ BEGIN PERFORM 1; END $$")]
    [InlineData("SELECT 1 WHERE false")]
    public async Task A_deferred_write_of_any_kind_then_the_backend_killed_during_commit_is_never_retried(string write)
    {
        var table = await CreateSlowCommitTableAsync("final_kinds_runner");
        var runs = 0;
        var pid = 0;
        var killer = db.TerminateWhenSleepingAsync(() => Volatile.Read(ref pid));

        var e = await Record.ExceptionAsync(() => Runner().RunAsync(async (tx, ct) =>
        {
            if (Interlocked.Increment(ref runs) == 1)
            {
                Volatile.Write(ref pid, tx.Connection!.ProcessID);
            }

            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1)", transaction: tx);
            tx.DeferUntilCommit(write);
        }).WaitAsync(TimeSpan.FromSeconds(60)));
        await killer.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.IsType<CommitOutcomeUnknownException>(e);
        Assert.Equal(1, runs);
    }

    [Fact]
    public async Task Arrays_in_a_deferred_write_are_passed_as_Dapper_passes_them_to_Npgsql_not_expanded_into_lists()
    {
        // On an NpgsqlConnection Dapper sends an array as one array parameter (WHERE id = ANY(@ids), an int[] column
        // value). The deferred write must do the same: expanded into (@ids1, @ids2) ANY fails, and an empty array
        // becomes (SELECT @tags WHERE 1 = 0), a NULL where the caller wrote '{}'.
        var table = "final_arrays_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, tags int[], v int NOT NULL DEFAULT 0); INSERT INTO {table} (id) VALUES (1), (2), (3)");

        await Runner().RunAsync(async (tx, ct) =>
        {
            // The same statements through Dapper on the transaction's own connection, for comparison.
            await tx.Connection!.ExecuteAsync($"INSERT INTO {table} (id, tags) VALUES (@id, @tags)", new { id = 10, tags = Array.Empty<int>() }, tx);
            tx.DeferUntilCommit($"INSERT INTO {table} (id, tags) VALUES (@id, @tags)", new { id = 11, tags = Array.Empty<int>() });
            tx.DeferUntilCommit($"INSERT INTO {table} (id, tags) VALUES (@id, @tags)", new { id = 12, tags = new[] { 7, 8 } });
            tx.DeferUntilCommit($"UPDATE {table} SET v = 1 WHERE id = ANY(@ids)", new { ids = new[] { 1, 2 } });
        });

        var rows = (await db.DataSource.OpenConnection().QueryAsync<(int Id, string? Tags, int V)>($"SELECT id, tags::text, v FROM {table} ORDER BY id")).ToArray();
        Assert.Equal([(1, null, 1), (2, null, 1), (3, null, 0), (10, "{}", 0), (11, "{}", 0), (12, "{7,8}", 0)], rows);
    }

    [Fact]
    public async Task ExecuteAndCommitAsync_passes_arrays_as_Dapper_passes_them_to_Npgsql()
    {
        var table = await db.CreateHotRowTableAsync("final_arrays_plain");
        await db.ExecuteAsync($"INSERT INTO {table} VALUES (2, 0), (3, 0)");

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var affected = await tx.ExecuteAndCommitAsync($"UPDATE {table} SET v = 1 WHERE id = ANY(@ids)", new { ids = new[] { 1, 3 } });

        Assert.Equal(2, affected);
        Assert.Equal(2, await db.ScalarAsync<int>($"SELECT sum(v) FROM {table}"));
    }

    [Fact]
    public async Task A_deferral_still_reading_its_parameters_when_the_commit_begins_is_refused_not_silently_dropped()
    {
        // A background task defers while the work returns: its DeferUntilCommit passed the "work has returned" check and
        // was still reading its parameter object (Dapper reads properties) when the runner built the commit batch. It
        // must not return as if queued: the write was never sent.
        var table = await db.CreateHotRowTableAsync("final_late");
        var reading = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var committed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task? deferral = null;

        await Runner().RunAsync(async (tx, ct) =>
        {
            var slow = new SlowParameter(reading, committed.Task);
            deferral = Task.Run(() => tx.DeferUntilCommit($"UPDATE {table} SET v = @V WHERE id = 1", slow), CancellationToken.None);
            await reading.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        });
        committed.SetResult();

        var e = await Record.ExceptionAsync(() => deferral!.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.IsType<InvalidOperationException>(e);
        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    private sealed class SlowParameter(TaskCompletionSource reading, Task release)
    {
        public int V
        {
            get
            {
                reading.TrySetResult();
                release.Wait(TimeSpan.FromSeconds(30));
                return 5;
            }
        }
    }

    [Theory]
    [InlineData("COPY {table} FROM STDIN")]
    [InlineData("COPY {table} TO STDOUT")]
    [InlineData("copy ({table}) from stdin")]
    public async Task A_COPY_cannot_travel_in_the_commit_batch_and_is_refused_before_anything_is_sent(string write)
    {
        var table = await db.CreateHotRowTableAsync("final_copy");
        var sql = write.Replace("{table}", table, StringComparison.Ordinal);

        await Runner().RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = 1 WHERE id = 1", transaction: tx);
            Assert.Throws<ArgumentException>("sql", () => tx.DeferUntilCommit(sql));
        });

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var plain = await connection.BeginTransactionAsync();
        await Assert.ThrowsAsync<ArgumentException>("sql", () => plain.ExecuteAndCommitAsync(sql));
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1", transaction: plain)); // still usable
    }

    [Fact]
    public async Task A_deferred_write_after_the_work_swallowed_an_error_reports_the_swallowed_error_and_is_not_retried()
    {
        var table = await db.CreateHotRowTableAsync("final_swallowed");
        var runs = 0;

        var e = await Record.ExceptionAsync(() => Runner().RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = 3 WHERE id = 1", transaction: tx);
            try
            {
                await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1, 0)", transaction: tx);
            }
            catch (PostgresException)
            {
                // swallowed
            }

            tx.DeferUntilCommit($"UPDATE {table} SET v = 4 WHERE id = 1");
        }));

        Assert.Equal(PostgresErrorCodes.InFailedSqlTransaction, Assert.IsType<RowLockException>(e).SqlState);
        Assert.Equal(1, runs);
        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task A_deferred_write_whose_parameter_Npgsql_cannot_send_fails_as_itself_not_as_an_unknown_commit()
    {
        var table = await db.CreateHotRowTableAsync("final_badparam");

        var e = await Record.ExceptionAsync(() => Runner().RunAsync(async (tx, ct) =>
        {
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = 3 WHERE id = 1", transaction: tx);
            tx.DeferUntilCommit($"UPDATE {table} SET v = @v WHERE id = 1", new { v = 5UL });
        }));

        Assert.IsNotType<CommitOutcomeUnknownException>(e);
        Assert.Equal(0, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }
}
