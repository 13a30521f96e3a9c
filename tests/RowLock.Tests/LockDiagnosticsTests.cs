using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Issue 16: who blocks whom. Every test stages a real chain (see <see cref="StagedLockChain"/>) that mixes a row
/// lock, an advisory lock and a transaction-id wait, four levels deep, and reads it back.
/// </summary>
public sealed class LockDiagnosticsTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>, IAsyncLifetime
{
    // The chain's tables and sessions are per database: tests in this class must not overlap.
    private static readonly SemaphoreSlim OneChainAtATime = new(1, 1);

    public Task InitializeAsync() => OneChainAtATime.WaitAsync();

    public Task DisposeAsync()
    {
        OneChainAtATime.Release();
        return Task.CompletedTask;
    }

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
        Assert.Equal("accounts", b.Relation);
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
        Assert.Equal("accounts", e.Relation);
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
}
