using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Issue 26 items 1, 2 and 4: the lock-wait snapshot in the situations an incident brings, each staged with real
/// sessions: blockers that are not sessions of this database, a long queue on one row, parallel workers, a DDL lock
/// queue, a deadlock before the detector fires, the same table name in two schemas.
/// </summary>
public sealed class IncidentDiagnosticsTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task A_prepared_transaction_holding_a_row_is_the_root_with_its_gid_and_no_waiter_is_promoted()
    {
        var table = await db.CreateHotRowTableAsync("px");
        var gid = "rowlock-test-" + Guid.NewGuid().ToString("N")[..8];
        await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
        try
        {
            await sessions.RunAsync("P", $"BEGIN; SELECT v FROM {table} WHERE id = 1 FOR UPDATE; PREPARE TRANSACTION '{gid}';");
            await sessions.StartWaitingAsync("W1", $"UPDATE {table} SET v = v + 1 WHERE id = 1");
            await sessions.StartWaitingAsync("W2", $"UPDATE {table} SET v = v + 1 WHERE id = 1");

            var snapshot = await db.DataSource.GetLockWaitSnapshotAsync();

            var root = Assert.Single(snapshot.Roots);
            Assert.True(root.IsPreparedTransaction);
            Assert.Equal(gid, root.PreparedTransactionId);
            Assert.True(root.Pid < 0);
            Assert.Equal(2, root.HoldsUp);
            Assert.True(root.TransactionAge > TimeSpan.Zero);
            var w1 = snapshot.Session(sessions.Pids["W1"])!;
            var w2 = snapshot.Session(sessions.Pids["W2"])!;
            Assert.False(w1.IsRoot);
            Assert.False(w2.IsRoot);
            Assert.Equal(root.Pid, w1.RootBlocker);
            Assert.Equal(root.Pid, w2.RootBlocker);
            Assert.Equal([root.Pid], w1.Holders);
            var tree = snapshot.ToTextTree();
            Assert.Contains($"prepared transaction '{gid}' prepared ", tree, StringComparison.Ordinal);
            Assert.Contains("holds up 2; end it with COMMIT PREPARED or ROLLBACK PREPARED", tree, StringComparison.Ordinal);
            Assert.Contains("2 waiting in queue order for row (0,1) of public." + table + ", oldest first", tree, StringComparison.Ordinal);
            AssertMermaidEdgesEndAtDeclaredNodes(snapshot.ToMermaid());

            var check = new LockWaitHealthCheck(db.DataSource, new LockWaitHealthCheckOptions { Threshold = TimeSpan.FromTicks(1) });
            var health = await check.CheckHealthAsync(new HealthCheckContext { Registration = new HealthCheckRegistration("locks", check, null, null) });
            Assert.Equal(HealthStatus.Degraded, health.Status);
            Assert.Equal(gid, health.Data["root_blocker_prepared_transaction"]);
            Assert.Contains($"root blocker prepared transaction '{gid}'", health.Description, StringComparison.Ordinal);
        }
        finally
        {
            await db.ExecuteAsync($"ROLLBACK PREPARED '{gid}'");
        }
    }

    [Fact]
    public async Task A_blocker_connected_to_another_database_is_shown_in_that_database_and_stays_the_root()
    {
        var other = await db.Server.CreateDatabaseAsync("o");
        var otherName = new NpgsqlConnectionStringBuilder(other).Database!;
        try
        {
            await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
            await sessions.OpenAsync("Elsewhere", other);
            // A shared catalog is one object for every database: a lock on it is the one way a session of another
            // database blocks this one (advisory and table locks belong to their database). pg_shseclabel: nobody else reads it.
            await sessions.RunAsync("Elsewhere", "BEGIN; LOCK TABLE pg_catalog.pg_shseclabel IN ACCESS EXCLUSIVE MODE;");
            await sessions.StartWaitingAsync("Here", "SELECT count(*) FROM pg_catalog.pg_shseclabel");

            var snapshot = await db.DataSource.GetLockWaitSnapshotAsync();

            var root = Assert.Single(snapshot.Roots);
            Assert.Equal(sessions.Pids["Elsewhere"], root.Pid);
            Assert.True(root.IsInOtherDatabase);
            Assert.Equal(otherName, root.Database);
            Assert.False(snapshot.Session(sessions.Pids["Here"])!.IsRoot);
            Assert.Equal("pg_catalog.pg_shseclabel", snapshot.Session(sessions.Pids["Here"])!.WaitingFor!.Relation);
            Assert.Contains($"pid {root.Pid} (Elsewhere) in database {otherName} idle in transaction", snapshot.ToTextTree(), StringComparison.Ordinal);
            AssertMermaidEdgesEndAtDeclaredNodes(snapshot.ToMermaid());
        }
        finally
        {
            await db.Server.DropDatabaseAsync(other);
        }
    }

    [Fact]
    public async Task All_databases_names_each_session_s_database_and_the_table_of_a_row_in_another_database()
    {
        var other = await db.Server.CreateDatabaseAsync("o");
        var otherName = new NpgsqlConnectionStringBuilder(other).Database!;
        try
        {
            await using (var setup = new NpgsqlConnection(other))
            {
                await setup.OpenAsync();
                await using var create = new NpgsqlCommand("CREATE TABLE far (id int PRIMARY KEY, v int); INSERT INTO far VALUES (1, 0);", setup);
                await create.ExecuteNonQueryAsync();
            }

            await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
            await sessions.OpenAsync("FarHolder", other);
            await sessions.OpenAsync("FarWaiter", other);
            await sessions.RunAsync("FarHolder", "BEGIN; SELECT v FROM far WHERE id = 1 FOR UPDATE;");
            await sessions.StartWaitingAsync("FarWaiter", "UPDATE far SET v = 1 WHERE id = 1");

            var here = await db.DataSource.GetLockWaitSnapshotAsync();
            var all = await db.DataSource.GetLockWaitSnapshotAsync(new LockWaitSnapshotOptions { AllDatabases = true });

            Assert.Null(here.Session(sessions.Pids["FarWaiter"]));
            var waiter = all.Session(sessions.Pids["FarWaiter"])!;
            Assert.Equal(otherName, waiter.Database);
            Assert.True(waiter.WaitingFor!.IsInOtherDatabase);
            Assert.Equal("public.far", waiter.WaitingFor.Relation);
            var tree = all.ToTextTree();
            Assert.Contains($"(FarWaiter) in database {otherName} waits ", tree, StringComparison.Ordinal);
            Assert.Contains($"row (0,1) of public.far in database {otherName} via transaction", tree, StringComparison.Ordinal);
            Assert.DoesNotContain(" of ?", tree, StringComparison.Ordinal);
        }
        finally
        {
            await db.Server.DropDatabaseAsync(other);
        }
    }

    [Fact]
    public async Task One_hundred_fifty_waiters_on_one_row_render_as_one_queue_linear_in_the_sessions()
    {
        const int waiters = 150;
        var table = await db.CreateHotRowTableAsync("q");
        await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
        await sessions.RunAsync("holder", $"BEGIN; SELECT v FROM {table} WHERE id = 1 FOR UPDATE;");
        var updates = new List<Task>();
        for (var i = 0; i < waiters; i++)
        {
            updates.Add(await sessions.StartWaitingAsync($"w{i:000}", $"UPDATE {table} SET v = v + 1 WHERE id = 1"));
        }

        var snapshot = await db.DataSource.GetLockWaitSnapshotAsync();
        var tree = snapshot.ToTextTree();
        var mermaid = snapshot.ToMermaid();
        using var json = JsonDocument.Parse(snapshot.ToJson());

        var root = Assert.Single(snapshot.Roots);
        Assert.Equal(sessions.Pids["holder"], root.Pid);
        Assert.Equal(waiters, root.HoldsUp);
        Assert.Equal(waiters, snapshot.Waiting.Count);
        Assert.All(snapshot.Waiting, w => Assert.Equal([root.Pid], w.BlockerChain));
        var lines = tree.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.InRange(lines.Length, waiters, waiters + 10);
        Assert.Contains($"{waiters} waiting in queue order for row (0,1) of public.{table}, oldest first", tree, StringComparison.Ordinal);
        // Queue order is the order the waits began: w000 first, w149 last.
        var order = lines.Where(l => l.Contains(" waits ", StringComparison.Ordinal) && Regex.IsMatch(l, @"\(w\d{3}\)")).Select(l => Regex.Match(l, @"\((w\d{3})\)").Groups[1].Value).ToArray();
        Assert.Equal(Enumerable.Range(0, waiters).Select(i => $"w{i:000}"), order);
        Assert.InRange(mermaid.Split('\n').Length, waiters, 2 * waiters + 20);
        AssertMermaidEdgesEndAtDeclaredNodes(mermaid);
        Assert.Equal(waiters + 1, json.RootElement.GetProperty("sessions").GetArrayLength());

        await sessions.RunAsync("holder", "COMMIT");
        await Task.WhenAll(updates).WaitAsync(TimeSpan.FromSeconds(120));
        Assert.Equal(waiters, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task A_parallel_query_s_leader_is_the_blocker_and_its_workers_are_not_separate_roots()
    {
        var table = await db.CreateHotRowTableAsync("par");
        await db.ExecuteAsync($"""
            CREATE FUNCTION {table}_slow(i int) RETURNS bool LANGUAGE plpgsql PARALLEL SAFE AS $$ BEGIN PERFORM pg_sleep(600); RETURN true; END $$;
            """);
        await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
        await sessions.RunAsync("leader", "SET force_parallel_mode = on; SET parallel_leader_participation = off; SET max_parallel_workers_per_gather = 2;");
        await sessions.StartAsync("leader", $"SELECT count(*) FROM {table} WHERE {table}_slow(id)");
        var leader = sessions.Pids["leader"];
        await sessions.UntilAsync($"SELECT count(*) > 0 FROM pg_stat_activity WHERE leader_pid = {leader} AND pid <> {leader}", "a parallel worker to start");
        await sessions.StartWaitingAsync("ddl", $"ALTER TABLE {table} ADD COLUMN extra int");

        var snapshot = await db.DataSource.GetLockWaitSnapshotAsync();

        var root = Assert.Single(snapshot.Roots);
        Assert.Equal(leader, root.Pid);
        Assert.True(root.ParallelWorkers >= 1);
        Assert.Equal(leader, snapshot.Session(sessions.Pids["ddl"])!.RootBlocker);
        Assert.DoesNotContain(snapshot.Sessions, s => s.BackendType == "parallel worker");
        Assert.Contains($"pid {leader} (leader) active, transaction open ", snapshot.ToTextTree(), StringComparison.Ordinal);
        Assert.Contains("1 parallel worker, holds up 1", snapshot.ToTextTree(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Readers_queued_behind_a_VACUUM_FULL_and_an_ALTER_TABLE_hang_under_the_one_holder_as_one_queue()
    {
        var table = await db.CreateHotRowTableAsync("ddl");
        await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
        await sessions.RunAsync("reporting", $"BEGIN; SELECT count(*) FROM {table};");
        await sessions.StartWaitingAsync("vacuum", $"VACUUM FULL {table}");
        await sessions.StartWaitingAsync("reader1", $"SELECT count(*) FROM {table}");
        await sessions.StartWaitingAsync("reader2", $"SELECT v FROM {table} WHERE id = 1 FOR UPDATE");
        await sessions.StartWaitingAsync("alter", $"ALTER TABLE {table} ADD COLUMN extra int");

        var snapshot = await db.DataSource.GetLockWaitSnapshotAsync();

        var root = Assert.Single(snapshot.Roots);
        Assert.Equal(sessions.Pids["reporting"], root.Pid);
        Assert.Equal(4, root.HoldsUp);
        Assert.Equal([root.Pid], snapshot.Session(sessions.Pids["vacuum"])!.Holders);
        var reader = snapshot.Session(sessions.Pids["reader1"])!;
        Assert.Empty(reader.Holders); // it only waits behind the VACUUM FULL in the table lock's queue
        Assert.Contains(sessions.Pids["vacuum"], reader.BlockedBy);
        Assert.Equal([root.Pid], reader.BlockerChain);
        var tree = snapshot.ToTextTree();
        Assert.Contains($"4 waiting in queue order for table public.{table}, oldest first", tree, StringComparison.Ordinal);
        var queue = tree.Split('\n').SkipWhile(l => !l.Contains("waiting in queue order", StringComparison.Ordinal)).Skip(1).Take(4).ToArray();
        Assert.Matches(@"\(vacuum\) waits .* \[AccessExclusiveLock\]: VACUUM FULL", queue[0]);
        Assert.Contains("(reader1)", queue[1], StringComparison.Ordinal);
        Assert.Contains("(reader2)", queue[2], StringComparison.Ordinal);
        Assert.Contains("(alter)", queue[3], StringComparison.Ordinal);
        AssertMermaidEdgesEndAtDeclaredNodes(snapshot.ToMermaid());
    }

    [Fact]
    public async Task A_deadlock_the_detector_has_not_seen_yet_is_shown_as_a_cycle()
    {
        var table = await db.CreateHotRowTableAsync("cyc");
        await db.ExecuteAsync($"INSERT INTO {table} VALUES (2, 0)");
        await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
        // Each backend checks for deadlock after its own deadlock_timeout: an hour keeps the cycle standing for the test.
        await sessions.RunAsync("one", $"SET deadlock_timeout = '1h'; BEGIN; UPDATE {table} SET v = 1 WHERE id = 1;");
        await sessions.RunAsync("two", $"SET deadlock_timeout = '1h'; BEGIN; UPDATE {table} SET v = 1 WHERE id = 2;");
        await sessions.StartWaitingAsync("one", $"UPDATE {table} SET v = 2 WHERE id = 2");
        await sessions.StartWaitingAsync("two", $"UPDATE {table} SET v = 2 WHERE id = 1");

        var snapshot = await db.DataSource.GetLockWaitSnapshotAsync();

        var one = snapshot.Session(sessions.Pids["one"])!;
        var two = snapshot.Session(sessions.Pids["two"])!;
        Assert.True(one.IsInDeadlockCycle);
        Assert.True(two.IsInDeadlockCycle);
        Assert.Equal(Math.Min(one.Pid, two.Pid), Assert.Single(snapshot.Roots).Pid);
        var tree = snapshot.ToTextTree();
        Assert.Contains("in a lock cycle: a deadlock the server has not detected yet", tree, StringComparison.Ordinal);
        var lines = tree.Split('\n');
        Assert.Single(lines, l => l.Contains("(one) waits", StringComparison.Ordinal));
        Assert.Single(lines, l => l.Contains("(two) waits", StringComparison.Ordinal));
        Assert.Single(lines, l => l.Contains("(shown above: the cycle closes here)", StringComparison.Ordinal));
        AssertMermaidEdgesEndAtDeclaredNodes(snapshot.ToMermaid());
    }

    [Fact]
    public async Task The_same_table_name_in_two_schemas_is_schema_qualified()
    {
        var schema1 = TestTables.Unique("s");
        var schema2 = TestTables.Unique("s");
        await db.ExecuteAsync($"""
            CREATE SCHEMA {schema1}; CREATE TABLE {schema1}.dup (id int PRIMARY KEY); INSERT INTO {schema1}.dup VALUES (1);
            CREATE SCHEMA {schema2}; CREATE TABLE {schema2}.dup (id int PRIMARY KEY); INSERT INTO {schema2}.dup VALUES (1);
            """);
        await using var sessions = new LockSessions(db.ConnectionString, db.DataSource);
        await sessions.RunAsync("h1", $"BEGIN; SELECT * FROM {schema1}.dup FOR UPDATE;");
        await sessions.RunAsync("h2", $"BEGIN; SELECT * FROM {schema2}.dup FOR UPDATE;");
        await sessions.StartWaitingAsync("w1", $"SET search_path = {schema1}; SELECT * FROM dup FOR UPDATE");
        await sessions.StartWaitingAsync("w2", $"SET search_path = {schema2}; SELECT * FROM dup FOR UPDATE");

        var snapshot = await db.DataSource.GetLockWaitSnapshotAsync();

        Assert.Equal($"{schema1}.dup", snapshot.Session(sessions.Pids["w1"])!.WaitingFor!.Relation);
        Assert.Equal($"{schema2}.dup", snapshot.Session(sessions.Pids["w2"])!.WaitingFor!.Relation);
        Assert.Equal(2, snapshot.Roots.Count);
    }

    [Fact]
    public async Task The_idle_in_transaction_root_shows_how_long_it_has_been_idle_and_its_last_statement()
    {
        await using var chain = await StagedLockChain.StageAsync(db);
        var snapshot = await db.DataSource.GetLockWaitSnapshotAsync();

        var a = snapshot.Session(chain.Pids["A"])!;
        Assert.True(a.StateDuration > TimeSpan.Zero);
        Assert.Matches(@"pid \d+ \(A\) idle in transaction for \d\d:\d\d:\d\d, transaction open \d\d:\d\d:\d\d, holds up 4; last statement: SELECT balance FROM accounts WHERE id = 1 FOR UPDATE", snapshot.ToTextTree());
    }

    /// <summary>Every arrow of a Mermaid flowchart starts and ends at a node declared in it (an undeclared id would be drawn as a stray box).</summary>
    internal static void AssertMermaidEdgesEndAtDeclaredNodes(string mermaid)
    {
        var declared = Regex.Matches(mermaid, @"^\s+(\w+)\[", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToHashSet();
        var edges = Regex.Matches(mermaid, @"^\s+(\w+) -\.?-?>(?:\|""[^""]*""\|)? (\w+)$", RegexOptions.Multiline);
        Assert.NotEmpty(edges);
        foreach (Match edge in edges)
        {
            Assert.Contains(edge.Groups[1].Value, declared);
            Assert.Contains(edge.Groups[2].Value, declared);
        }
    }
}
