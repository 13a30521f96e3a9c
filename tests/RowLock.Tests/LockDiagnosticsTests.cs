using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Issue 16: who blocks whom. Every test stages a real chain (see <see cref="StagedLockChain"/>) that mixes a row
/// lock, an advisory lock and a transaction-id wait, four levels deep, and reads it back.
/// </summary>
public sealed class LockDiagnosticsTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    // xUnit runs the tests of one class one after the other, so each staged chain has the class's database to itself.

    [Fact]
    public async Task A_snapshot_of_a_four_level_chain_names_the_root_every_wait_target_and_the_advisory_name()
    {
        await using var chain = await StagedLockChain.StageAsync(db);
        var names = new AdvisoryKeyNames([StagedLockChain.AdvisoryName]);

        var snapshot = await db.DataSource.GetLockWaitSnapshotAsync(new LockWaitSnapshotOptions { AdvisoryKeyNames = names });

        var p = chain.Pids;
        LockSession S(string letter) => snapshot.Session(p[letter]) ?? throw new Xunit.Sdk.XunitException($"{letter} is missing from the snapshot.");

        Assert.Equal(["A", "F"], snapshot.Roots.Select(r => chain.LetterOf(r.Pid)));
        Assert.Equal(4, S("A").HoldsUp);
        Assert.Equal(1, S("F").HoldsUp);
        Assert.Equal(["B", "C", "D", "E", "G"], snapshot.Waiting.Select(s => chain.LetterOf(s.Pid)).Order());

        Assert.Equal([p["A"]], S("B").BlockedBy);
        Assert.Equal([p["B"]], S("C").BlockedBy);
        Assert.Equal([p["C"]], S("D").BlockedBy);
        Assert.Equal([p["B"]], S("E").BlockedBy);
        Assert.Equal(new[] { p["C"], p["E"] }.Order(), S("B").Blocking);
        Assert.Equal([p["C"], p["B"], p["A"]], S("D").BlockerChain);
        Assert.Equal(p["A"], S("D").RootBlocker);
        Assert.Equal(p["F"], S("G").RootBlocker);

        var b = S("B").WaitingFor!;
        Assert.Equal(LockWaitTargetKind.Row, b.Kind);
        Assert.Equal("transactionid", b.LockType);
        Assert.Equal("public.accounts", b.Relation);
        Assert.Equal("(0,1)", b.Ctid);
        Assert.NotNull(b.TransactionId);

        var c = S("C").WaitingFor!;
        Assert.Equal(LockWaitTargetKind.Advisory, c.Kind);
        Assert.Equal(AdvisoryLockKey.FromName(StagedLockChain.AdvisoryName), c.AdvisoryKey);
        Assert.Equal(StagedLockChain.AdvisoryName, c.AdvisoryName);
        Assert.Equal("ExclusiveLock", c.Mode);

        var d = S("D").WaitingFor!;
        Assert.Equal(LockWaitTargetKind.TransactionId, d.Kind);
        Assert.Null(d.Relation);
        Assert.NotEqual(b.TransactionId, d.TransactionId);

        var e = S("E").WaitingFor!;
        Assert.Equal(LockWaitTargetKind.Row, e.Kind);
        Assert.Equal("tuple", e.LockType);
        Assert.Equal("public.accounts", e.Relation);
        Assert.Equal("(0,1)", e.Ctid);

        var g = S("G").WaitingFor!;
        Assert.Equal(LockWaitTargetKind.Advisory, g.Kind);
        Assert.Equal(StagedLockChain.PairKey, g.AdvisoryKey);
        Assert.Null(g.AdvisoryName);

        Assert.Equal(["A"], snapshot.IdleInTransactionBlockers.Select(s => chain.LetterOf(s.Pid)));
        Assert.Equal("idle", S("F").State);
        Assert.Null(S("F").TransactionAge);
        Assert.Contains("FOR UPDATE", S("A").Query, StringComparison.Ordinal);
        Assert.All(snapshot.Waiting, w => Assert.True(w.WaitDuration > TimeSpan.Zero));
        Assert.Equal("A", chain.LetterOf(snapshot.LongestTransactions[0].Pid));
        Assert.NotNull(snapshot.Deadlocks);
    }

    [Fact]
    public async Task The_text_tree_and_the_Mermaid_graph_of_the_chain_are_exactly_as_expected()
    {
        await using var chain = await StagedLockChain.StageAsync(db);
        var snapshot = await db.DataSource.GetLockWaitSnapshotAsync(
            new LockWaitSnapshotOptions { AdvisoryKeyNames = new AdvisoryKeyNames([StagedLockChain.AdvisoryName]) });

        var tree = chain.Normalise(snapshot.ToTextTree(), snapshot.Database);
        var mermaid = chain.Normalise(snapshot.ToMermaid(), snapshot.Database);

        Assert.Equal(ExpectedTree, tree);
        Assert.Equal(ExpectedMermaid, mermaid);
        IncidentDiagnosticsTests.AssertMermaidEdgesEndAtDeclaredNodes(snapshot.ToMermaid());
    }

    /// <summary>The tree of <see cref="StagedLockChain"/>, normalised: also what the CLI must print.</summary>
    internal const string ExpectedTree = """
        DB: 5 sessions wait behind 2 root blockers
        ├── pid A (A) idle in transaction for hh:mm:ss, transaction open hh:mm:ss, holds up 4; last statement: SELECT balance FROM accounts WHERE id = 1 FOR UPDATE
        │   └── 2 waiting in queue order for row (0,1) of public.accounts, oldest first
        │       ├── pid B (B) waits hh:mm:ss for row (0,1) of public.accounts via transaction X [ShareLock]: SELECT balance FROM accounts WHERE id = 1 FOR UPDATE
        │       │   └── pid C (C) waits hh:mm:ss for advisory lock "jobs.sync" (key -4651928847416113214) [ExclusiveLock]: SELECT pg_advisory_xact_lock(-4651928847416113214)
        │       │       └── pid D (D) waits hh:mm:ss for transaction X [ShareLock]: INSERT INTO invoices VALUES (7)
        │       └── pid E (E) waits hh:mm:ss for row (0,1) of public.accounts [AccessExclusiveLock]: SELECT balance FROM accounts WHERE id = 1 FOR UPDATE
        └── pid F (F) idle, holds up 1; last statement: SELECT pg_advisory_lock(7, 11)
            └── pid G (G) waits hh:mm:ss for advisory lock (7, 11) [ExclusiveLock]: SELECT pg_advisory_lock(7, 11)
        Idle in transaction while others wait: pid A (A) (transaction open hh:mm:ss, holds up 4)
        Longest transactions: pid A (A) hh:mm:ss, pid B (B) hh:mm:ss, pid C (C) hh:mm:ss, pid D (D) hh:mm:ss, pid E (E) hh:mm:ss
        Deadlocks in DB since statistics reset: 0

        """;

    /// <summary>The Mermaid graph of <see cref="StagedLockChain"/>, normalised: B and E wait for the same row, so they go through one queue node.</summary>
    internal const string ExpectedMermaid = """
        flowchart RL
            pA["pid A (A)<br/>idle in transaction for hh:mm:ss, transaction open hh:mm:ss, holds up 4<br/>SELECT balance FROM accounts WHERE id = 1 FOR UPDATE"]
            pB["pid B (B)<br/>waits hh:mm:ss"]
            pC["pid C (C)<br/>waits hh:mm:ss"]
            pD["pid D (D)<br/>waits hh:mm:ss"]
            pE["pid E (E)<br/>waits hh:mm:ss"]
            pF["pid F (F)<br/>idle, holds up 1<br/>SELECT pg_advisory_lock(7, 11)"]
            pG["pid G (G)<br/>waits hh:mm:ss"]
            q1[/"2 wait in queue order<br/>row (0,1) of public.accounts"/]
            q1 --> pA
            pB -->|"1: ShareLock"| q1
            pE -->|"2: AccessExclusiveLock"| q1
            pC -->|"advisory lock #quot;jobs.sync#quot; (key -4651928847416113214) [ExclusiveLock]"| pB
            pD -->|"transaction X [ShareLock]"| pC
            pG -->|"advisory lock (7, 11) [ExclusiveLock]"| pF
            classDef root fill:#fde2e2,stroke:#c0392b,stroke-width:2px
            class pA,pF root

        """;

    [Fact]
    public async Task A_role_without_pg_read_all_stats_sees_the_whole_graph_but_not_other_roles_queries()
    {
        await using var chain = await StagedLockChain.StageAsync(db);
        var role = "rl_watch_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE ROLE {role} LOGIN PASSWORD 'watch'");
        try
        {
            await using var watcher = db.CreateDataSource(b =>
            {
                b.Username = role;
                b.Password = "watch";
                b.Pooling = false;
            });
            Assert.False(await db.ScalarAsync<bool>($"SELECT rolsuper FROM pg_roles WHERE rolname = '{role}'"));
            var names = new AdvisoryKeyNames([StagedLockChain.AdvisoryName]);

            var hidden = await watcher.GetLockWaitSnapshotAsync(new LockWaitSnapshotOptions { AdvisoryKeyNames = names });

            Assert.Equal(["A", "F"], hidden.Roots.Select(r => chain.LetterOf(r.Pid)));
            Assert.Equal([chain.Pids["C"], chain.Pids["B"], chain.Pids["A"]], hidden.Session(chain.Pids["D"])!.BlockerChain);
            Assert.Equal("(0,1)", hidden.Session(chain.Pids["B"])!.WaitingFor!.Ctid);
            Assert.Equal(StagedLockChain.AdvisoryName, hidden.Session(chain.Pids["C"])!.WaitingFor!.AdvisoryName);
            Assert.All(hidden.Waiting, w => Assert.True(w.WaitDuration > TimeSpan.Zero));
            var a = hidden.Session(chain.Pids["A"])!;
            Assert.True(a.IsDetailHidden);
            Assert.Null(a.Query);
            Assert.Null(a.State);
            Assert.Equal("A", a.ApplicationName);
            Assert.Contains("details hidden", hidden.ToTextTree(), StringComparison.Ordinal);

            await db.ExecuteAsync($"GRANT pg_read_all_stats TO {role}");
            var visible = await watcher.GetLockWaitSnapshotAsync(new LockWaitSnapshotOptions { AdvisoryKeyNames = names });

            var seen = visible.Session(chain.Pids["A"])!;
            Assert.False(seen.IsDetailHidden);
            Assert.Equal("idle in transaction", seen.State);
            Assert.Contains("FOR UPDATE", seen.Query, StringComparison.Ordinal);
            Assert.Equal(ExpectedTree, chain.Normalise(visible.ToTextTree(), visible.Database));
        }
        finally
        {
            await db.ExecuteAsync($"DROP ROLE {role}");
        }
    }

    [Fact]
    public async Task With_no_waits_the_snapshot_is_empty_but_still_reports_the_database_and_deadlocks()
    {
        var snapshot = await db.DataSource.GetLockWaitSnapshotAsync();

        Assert.Empty(snapshot.Waiting);
        Assert.Empty(snapshot.Roots);
        Assert.NotNull(snapshot.Deadlocks);
        Assert.StartsWith(snapshot.Database + ": no session waits on a lock\n", snapshot.ToTextTree(), StringComparison.Ordinal);
        Assert.Contains("no session waits on a lock", snapshot.ToMermaid(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_real_deadlock_shows_in_the_deadlocks_counter()
    {
        var table = await db.CreateHotRowTableAsync("dl");
        await db.ExecuteAsync($"INSERT INTO {table} VALUES (2, 0)");
        // A database no backend has reported statistics for yet has no pg_stat_database counters: null, that is 0.
        var before = (await db.DataSource.GetLockWaitSnapshotAsync()).Deadlocks ?? 0;

        await using var one = await db.DataSource.OpenConnectionAsync();
        await using var two = await db.DataSource.OpenConnectionAsync();
        await using var tx1 = await one.BeginTransactionAsync();
        await using var tx2 = await two.BeginTransactionAsync();
        await Exec(one, $"UPDATE {table} SET v = 1 WHERE id = 1");
        await Exec(two, $"UPDATE {table} SET v = 1 WHERE id = 2");
        var first = Exec(one, $"UPDATE {table} SET v = 1 WHERE id = 2");
        var second = Exec(two, $"UPDATE {table} SET v = 1 WHERE id = 1");
        // The victim's error aborts its transaction, which releases its locks at once: the survivor's statement then
        // completes, possibly before the victim's error reaches this client. Both statements end; exactly one failed.
        var outcomes = await Task.WhenAll(Outcome(first), Outcome(second)).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(1, outcomes.Count(sqlState => sqlState == PostgresErrorCodes.DeadlockDetected));
        Assert.Equal(1, outcomes.Count(sqlState => sqlState is null));
        await tx1.RollbackAsync();
        await tx2.RollbackAsync();

        // Statistics reach the shared counter when the backend next reports them (about once a second when idle).
        var deadline = DateTime.UtcNow.AddSeconds(60);
        long after;
        while ((after = (await db.DataSource.GetLockWaitSnapshotAsync()).Deadlocks ?? 0) == before && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }

        Assert.Equal(before + 1, after);

        static async Task<string?> Outcome(Task update)
        {
            try
            {
                await update;
                return null;
            }
            catch (PostgresException e)
            {
                return e.SqlState;
            }
        }

        static async Task Exec(NpgsqlConnection connection, string sql)
        {
            await using var command = new NpgsqlCommand(sql, connection);
            await command.ExecuteNonQueryAsync();
        }
    }

    [Fact]
    public async Task Options_out_of_range_are_refused_before_anything_is_sent()
    {
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => db.DataSource.GetLockWaitSnapshotAsync(new LockWaitSnapshotOptions { MaxQueryLength = 0 }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => db.DataSource.GetLockWaitSnapshotAsync(new LockWaitSnapshotOptions { LongestTransactionCount = -1 }));
        await using var closed = db.DataSource.CreateConnection();
        await Assert.ThrowsAsync<InvalidOperationException>(() => closed.GetLockWaitSnapshotAsync());
    }
}
