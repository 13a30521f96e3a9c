using Dapper;
using RowLock.Hosting;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests.Leader;

/// <summary>The fence itself, with the interleavings forced: what a stale leader's transaction meets.</summary>
public sealed class LeaderFenceTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task Without_the_fence_a_stale_leader_commits_after_the_new_epoch_and_the_check_sees_it()
    {
        var name = LeaderTestKit.UniqueName("unfenced");
        var log = await FencedLog.CreateAsync(db.DataSource, "unfenced");
        var runner = new TransactionRunner(db.DataSource);
        var first = new LeaderElection(db.DataSource, name, LeaderTestKit.FastOptions("a"));
        var second = new LeaderElection(db.DataSource, name, LeaderTestKit.FastOptions("b"));
        var stale = await first.AcquireAsync();
        await log.AppendUnfencedAsync(runner, stale.Epoch, "a", default);
        Assert.Equal(1, await LeaderTestKit.TerminateLeaderBackendAsync(db.DataSource, name));
        await using var fresh = await second.AcquireAsync();
        await log.AppendUnfencedAsync(runner, fresh.Epoch, "b", default);

        // The stale leader has not noticed (or ignores it) and writes without the fence: the write lands.
        await log.AppendUnfencedAsync(runner, stale.Epoch, "a", default);
        Assert.Equal(1, (await log.CheckAsync(db.DataSource)).Violations);

        // The same write fenced is refused by the database.
        var refused = await Assert.ThrowsAsync<LeadershipLostException>(() => log.AppendAsync(runner, stale, "a", deferred: true, default));
        Assert.Equal(stale.Epoch, refused.Epoch);
        Assert.Equal(fresh.Epoch, refused.CurrentEpoch);
        Assert.False(refused.IsTransient);
        await stale.DisposeAsync();
    }

    [Fact]
    public async Task A_new_leader_waits_for_a_fenced_transaction_in_flight_and_a_fence_after_it_fails()
    {
        var name = LeaderTestKit.UniqueName("inflight");
        var table = await db.CreateHotRowTableAsync("fenced_target");
        var first = new LeaderElection(db.DataSource, name, LeaderTestKit.FastOptions("a"));
        var second = new LeaderElection(db.DataSource, name, LeaderTestKit.FastOptions("b"));
        var old = await first.AcquireAsync();

        // A stale leader (its Lost never fired) is in the middle of a fenced transaction when it loses the lock.
        var staleView = new Leadership(name, old.Epoch, fencedTransactionIdleTimeout: null);
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await tx.FenceAsync(staleView);
        await connection.ExecuteAsync($"UPDATE {table} SET v = v + 1 WHERE id = 1", transaction: tx);
        Assert.Equal(1, await LeaderTestKit.TerminateLeaderBackendAsync(db.DataSource, name));

        // The follower gets the lock, but its epoch increment waits on the fenced transaction's KEY SHARE row lock.
        var takeover = second.AcquireAsync();
        await WaitUntilAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = @app AND wait_event_type = 'Lock'", new { app = "rowlock-leader:" + name }) == 1);
        Assert.False(takeover.IsCompleted);

        // The stale transaction commits before the new epoch exists: that is allowed (nothing newer was committed yet).
        await tx.CommitAsync();
        await using var fresh = await takeover;
        Assert.Equal(old.Epoch + 1, fresh.Epoch);

        // From now on the stale leader's fence fails, in the runner too, without retries.
        var runner = new TransactionRunner(db.DataSource);
        await Assert.ThrowsAsync<LeadershipLostException>(() => runner.RunAsync(async (t, ct) =>
        {
            await t.FenceAsync(staleView, ct);
            t.DeferUntilCommit($"UPDATE {table} SET v = v + 100 WHERE id = 1");
        }));
        Assert.Equal(1, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
        await old.DisposeAsync();
    }

    [Fact]
    public async Task Acquiring_again_while_leading_is_refused_instead_of_stacking_the_lock()
    {
        var election = new LeaderElection(db.DataSource, LeaderTestKit.UniqueName("stack"), LeaderTestKit.FastOptions("a"));
        await using var leadership = await election.AcquireAsync();
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => election.TryAcquireAsync());
        Assert.Contains("already leads", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, await db.AdvisoryHoldersAsync(AdvisoryLockKey.FromName(election.Name)));
        // pg_stat_activity names the leader's session.
        Assert.Equal(1, await db.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = @app AND state = 'idle'", new { app = "rowlock-leader:" + election.Name }));
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(clock.Elapsed < LeaderTestKit.Guard, "the condition never came true");
            await Task.Delay(20);
        }
    }
}
