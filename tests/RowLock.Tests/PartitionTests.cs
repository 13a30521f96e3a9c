using System.Diagnostics;
using System.Globalization;
using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;
using RowLock.TestServer;
using Xunit.Abstractions;

namespace RowLock.Tests;

/// <summary>
/// Silent network partitions: a <see cref="FaultProxy"/> between client and server stops forwarding without closing
/// anything, so neither side sees a FIN or RST. Only timeouts can tell. What bounds what (Npgsql connection string):
/// <list type="bullet">
/// <item><c>Keepalive</c> (s): an idle <see cref="AdvisoryLockHandle"/> sends a keepalive query that often; a keepalive with no
/// answer for as long again breaks the connection and fires <c>LockLost</c>.</item>
/// <item><c>Command Timeout</c> (s): a statement (the unit of work's, or COMMIT) with no answer fails after that long;
/// Npgsql then sends a cancel request on a new connection and waits <c>Cancellation Timeout</c> (ms; -1: not at all)
/// for its answer, the new connection itself bounded by <c>Timeout</c>.</item>
/// <item><c>Timeout</c> (s): opening a connection (and the cancel request's) gives up after that long.</item>
/// </list>
/// TCP keepalives (<c>Tcp Keepalive</c>) do not help against this proxy: its kernel answers the probes, as a NAT or
/// load balancer that lost the route would not always do. The server side is the same story: it keeps the session,
/// its locks and its open transaction until it notices the dead socket (<c>tcp_keepalives_*</c>) or a timeout ends
/// the session (<c>idle_in_transaction_session_timeout</c>).
/// </summary>
public sealed class PartitionTests(DatabaseFixture db, ITestOutputHelper output) : IClassFixture<DatabaseFixture>
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    private NpgsqlDataSource Through(FaultProxy proxy, Action<NpgsqlConnectionStringBuilder> configure)
    {
        var builder = new NpgsqlConnectionStringBuilder(proxy.ConnectionStringFor(db.ConnectionString)) { Timeout = 2, CancellationTimeout = -1 };
        configure(builder);
        return NpgsqlDataSource.Create(builder.ConnectionString);
    }

    [Fact]
    public async Task A_silent_partition_fires_lock_lost_within_the_keepalive_while_the_server_keeps_the_lock_until_the_socket_dies()
    {
        await using var proxy = FaultProxy.For(db.ConnectionString);
        await using var dataSource = Through(proxy, b =>
        {
            b.KeepAlive = 1;
            b.CommandTimeout = 5; // bounds the unlock that disposing the handle tries, should LockLost never fire
        });
        var key = AdvisoryLockKey.FromName("partitioned-" + Guid.NewGuid());
        await using var handle = await dataSource.AcquireAdvisoryLockAsync(key);

        Assert.Equal(1, proxy.SilenceOpenConnections());
        var clock = Stopwatch.StartNew();
        var lost = await WhenCancelledAsync(handle.LockLost, HangGuard);
        var timeToLockLost = clock.Elapsed;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"time to LockLost with Keepalive=1: {timeToLockLost.TotalMilliseconds:F0} ms"));
        Assert.True(lost, "LockLost did not fire within 30 s of a silent partition (Keepalive=1)");

        // The server has not noticed: the partitioned session still holds the lock, so nobody else may take it yet.
        await using (var meanwhile = await db.DataSource.TryAcquireAdvisoryLockAsync(key))
        {
            Assert.Null(meanwhile);
        }

        // Once the socket really dies (here: a reset), the server ends the session and the lock is free.
        proxy.ResetOpenConnections();
        var deadline = Stopwatch.StartNew();
        AdvisoryLockHandle? next;
        while ((next = await db.DataSource.TryAcquireAdvisoryLockAsync(key)) is null)
        {
            Assert.True(deadline.Elapsed < HangGuard, "the server kept the lock 30 s after the connection was reset");
            await Task.Delay(20);
        }

        await next.DisposeAsync();
    }

    [Fact]
    public async Task A_partition_during_work_fails_the_attempt_within_the_command_timeout_and_the_retry_commits_once_on_a_fresh_connection()
    {
        var table = await db.CreateHotRowTableAsync("partitioned_work");
        await using var proxy = FaultProxy.For(db.ConnectionString);

        // The partitioned attempt's transaction stays open on the server, holding the hot row's lock, until the server ends it.
        await using var dataSource = Through(proxy, b =>
        {
            b.CommandTimeout = 2;
            b.Options = "-c idle_in_transaction_session_timeout=3000";
        });
        var options = new TransactionRunnerOptions();
        options.Retry.Delay = TimeSpan.FromMilliseconds(50);
        var runner = new TransactionRunner(dataSource, options);
        var attempts = 0;
        var clock = Stopwatch.StartNew();
        TimeSpan? firstFailure = null;

        await runner.RunAsync(async (tx, ct) =>
        {
            attempts++;
            if (attempts > 1)
            {
                firstFailure ??= clock.Elapsed;
            }

            var v = (await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate, ct))[0];
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx);
            if (attempts == 1)
            {
                proxy.SilenceOpenConnections();
                await tx.Connection!.ExecuteAsync("SELECT 1", transaction: tx); // never answered
            }
        }).WaitAsync(HangGuard);

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"partition during work: attempt 1 failed after {firstFailure?.TotalMilliseconds:F0} ms (Command Timeout=2 s), done after {clock.Elapsed.TotalMilliseconds:F0} ms, {attempts} attempts"));
        Assert.Equal(2, attempts);
        Assert.Equal(1, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task A_pooled_connection_partitioned_before_the_attempt_fails_the_first_round_trip_within_the_command_timeout_and_is_retried()
    {
        var table = await db.CreateHotRowTableAsync("partitioned_idle");
        await using var proxy = FaultProxy.For(db.ConnectionString);
        await using var dataSource = Through(proxy, b => b.CommandTimeout = 2);

        // The pool keeps an idle connection whose route then dies silently (a NAT or load balancer forgot it).
        await using (var warm = await dataSource.OpenConnectionAsync())
        {
            await warm.ExecuteAsync("SELECT 1");
        }

        Assert.Equal(1, proxy.SilenceOpenConnections());
        var options = new TransactionRunnerOptions();
        options.Retry.Delay = TimeSpan.FromMilliseconds(50);
        var attempts = 0;

        // The attempt's first round trip (BEGIN and the runner's savepoint, in front of the work's first statement) gets no
        // answer within the command timeout: nothing was committed, so the work is run again on a fresh connection. (Until
        // the runner sent a marker of its own first, this round trip ran before the work and attempts was 1.)
        await new TransactionRunner(dataSource, options).RunAsync(async (tx, ct) =>
        {
            attempts++;
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = v + 1 WHERE id = 1", transaction: tx);
        }).WaitAsync(HangGuard);

        Assert.Equal(2, attempts);
        Assert.Equal(1, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1")); // applied once
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_partition_while_commit_is_in_flight_gives_commit_outcome_unknown_and_either_outcome_is_possible(bool onlyTheAnswerIsLost)
    {
        var table = await db.CreateHotRowTableAsync("partitioned_commit");
        await using var proxy = FaultProxy.For(db.ConnectionString);
        await using var dataSource = Through(proxy, b =>
        {
            b.CommandTimeout = 2;
            b.Options = "-c idle_in_transaction_session_timeout=3000";
        });
        var attempts = 0;
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<CommitOutcomeUnknownException>(() => new TransactionRunner(dataSource).RunAsync(async (tx, ct) =>
        {
            attempts++;
            await tx.Connection!.ExecuteAsync($"UPDATE {table} SET v = v + 1 WHERE id = 1", transaction: tx);
            proxy.SilenceOpenConnections(repliesOnly: onlyTheAnswerIsLost); // COMMIT is next
        }).WaitAsync(HangGuard));
        var detected = clock.Elapsed;

        Assert.Equal(1, attempts); // never retried blindly
        Assert.IsType<NpgsqlException>(error.InnerException, exactMatch: false);

        // The server decides: with the request lost, the transaction never committed (the server ends it after
        // idle_in_transaction_session_timeout); with only the answer lost, it did.
        var expected = onlyTheAnswerIsLost ? 1 : 0;
        var deadline = Stopwatch.StartNew();
        int v;
        while ((v = await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1")) != expected && deadline.Elapsed < HangGuard)
        {
            await Task.Delay(50);
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"partition during COMMIT ({(onlyTheAnswerIsLost ? "answer lost" : "request lost")}): CommitOutcomeUnknownException after {detected.TotalMilliseconds:F0} ms, landed: {v == 1}"));
        Assert.Equal(expected, v);
    }

    private static async Task<bool> WhenCancelledAsync(CancellationToken token, TimeSpan patience)
    {
        try
        {
            await Task.Delay(patience, token);
            return false;
        }
        catch (OperationCanceledException)
        {
            return true;
        }
    }
}
