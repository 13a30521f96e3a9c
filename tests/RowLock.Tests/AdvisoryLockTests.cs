using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Advisory locks on a real server: key compatibility, mutual exclusion under races, timeouts, lost and cancelled locks.</summary>
public sealed class AdvisoryLockTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static AdvisoryLockKey UniqueKey() => AdvisoryLockKey.FromName("test-" + Guid.NewGuid());

    [Fact]
    public async Task FromName_matches_the_servers_sha256_for_a_thousand_random_names()
    {
        var random = new Random(20261125);
        const string alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-:/'\"\\;éüßñçøΩжд中文字日本語한국어🙂🚀";
        var runes = alphabet.EnumerateRunes().Select(r => r.ToString()).ToArray();
        var names = Enumerable.Range(0, 1000)
            .Select(i => string.Concat(Enumerable.Range(0, 1 + random.Next(40)).Select(_ => runes[random.Next(runes.Length)])))
            .ToArray();

        await using var connection = await db.DataSource.OpenConnectionAsync();
        var server = (await connection.QueryAsync<(string Name, long Key)>(
            "SELECT n, ('x' || encode(substring(sha256(convert_to(n, 'UTF8')) from 1 for 8), 'hex'))::bit(64)::bigint FROM unnest(@names) AS n",
            new { names })).ToArray();

        Assert.Equal(names.Length, server.Length);
        foreach (var (name, key) in server)
        {
            Assert.Equal(key, AdvisoryLockKey.FromName(name).Value);
        }
    }

    [Fact]
    public async Task A_named_lock_shows_up_in_pg_locks_at_its_coordinates()
    {
        var key = AdvisoryLockKey.FromName("spp_api_v2.fastapi_endpoint_sync");
        await using var handle = await db.DataSource.AcquireAdvisoryLockAsync(key);
        Assert.Equal(1, await db.ScalarAsync<long>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 891055766 AND objid = 1352810831 AND objsubid = 1 AND granted"));
    }

    [Fact]
    public async Task Session_handles_give_exactly_one_holder_at_a_time()
    {
        var key = UniqueKey();
        var section = await Occupancy.RaceAsync(8, 10, async () => await db.DataSource.AcquireAdvisoryLockAsync(key), TimeSpan.FromMilliseconds(1));

        Assert.Equal(1, section.MostAtOnce);
        Assert.Equal(80, section.Entries);
        Assert.Equal(0, await db.AdvisoryHoldersAsync(key));
    }

    [Fact]
    public async Task Shared_locks_coexist_and_an_exclusive_one_waits_for_all_of_them()
    {
        var key = UniqueKey();
        await using var c1 = await db.DataSource.OpenConnectionAsync();
        await using var t1 = await c1.BeginTransactionAsync();
        await using var c2 = await db.DataSource.OpenConnectionAsync();
        await using var t2 = await c2.BeginTransactionAsync();
        Assert.True(await t1.TryAcquireAdvisoryLockAsync(key, AdvisoryLockMode.Shared));
        Assert.True(await t2.TryAcquireAdvisoryLockAsync(key, AdvisoryLockMode.Shared));

        await using var c3 = await db.DataSource.OpenConnectionAsync();
        await using var t3 = await c3.BeginTransactionAsync();
        Assert.False(await t3.TryAcquireAdvisoryLockAsync(key));
        var error = await Assert.ThrowsAsync<LockNotAvailableException>(() => t3.AcquireAdvisoryLockAsync(key, TimeSpan.FromMilliseconds(200)));
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, error.SqlState);
        Assert.StartsWith("The advisory lock", error.Message, StringComparison.Ordinal);

        // The waiter's transaction is still usable and its lock_timeout is untouched.
        Assert.Equal("0", await c3.ExecuteScalarAsync<string>("SHOW lock_timeout", transaction: t3));

        await t1.CommitAsync();
        Assert.False(await t3.TryAcquireAdvisoryLockAsync(key));
        var waiting = t3.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(30));
        await t2.CommitAsync();
        await waiting;
        Assert.Equal(1, await db.AdvisoryHoldersAsync(key));
        await t3.CommitAsync();
        Assert.Equal(0, await db.AdvisoryHoldersAsync(key));
    }

    [Fact]
    public async Task Shared_session_handles_coexist_and_exclude_an_exclusive_one()
    {
        var key = UniqueKey();
        await using var s1 = await db.DataSource.AcquireAdvisoryLockAsync(key, mode: AdvisoryLockMode.Shared);
        await using var s2 = await db.DataSource.TryAcquireAdvisoryLockAsync(key, mode: AdvisoryLockMode.Shared);
        Assert.NotNull(s2);
        Assert.Null(await db.DataSource.TryAcquireAdvisoryLockAsync(key));
        await Assert.ThrowsAsync<LockNotAvailableException>(() => db.DataSource.AcquireAdvisoryLockAsync(key, TimeSpan.FromMilliseconds(100)));
        await s1.DisposeAsync();
        await s2!.DisposeAsync();
        await using var exclusive = await db.DataSource.TryAcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(10));
        Assert.NotNull(exclusive);
    }

    [Fact]
    public async Task A_session_handle_blocks_others_until_disposed_then_frees_at_once()
    {
        var key = UniqueKey();
        var handle = await db.DataSource.AcquireAdvisoryLockAsync(key);
        Assert.Null(await db.DataSource.TryAcquireAdvisoryLockAsync(key));

        await handle.DisposeAsync();
        Assert.Equal(0, await db.AdvisoryHoldersAsync(key));
        await using var next = await db.DataSource.TryAcquireAdvisoryLockAsync(key);
        Assert.NotNull(next);
        Assert.False(handle.IsLost);
    }

    [Fact]
    public async Task Disposing_concurrently_releases_exactly_once()
    {
        var key = UniqueKey();
        var handle = await db.DataSource.AcquireAdvisoryLockAsync(key);
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () => await handle.DisposeAsync())));
        Assert.Equal(0, await db.AdvisoryHoldersAsync(key));

        // The pooled connection it used is clean and reusable.
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"));
        }
    }

    [Fact]
    public async Task A_released_handle_returns_a_healthy_connection_to_the_pool()
    {
        await using var pool = db.CreateDataSource(b => b.MaxPoolSize = 1);
        var key = UniqueKey();
        var handle = await pool.AcquireAdvisoryLockAsync(key);
        var (classId, objId, _) = key.PgLocksCoordinates;
        var holderPid = await db.ScalarAsync<int>(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = @c::bigint::oid AND objid = @o::bigint::oid",
            new { c = (long)classId, o = (long)objId });
        await handle.DisposeAsync();

        // The same server session serves the next user: stopping the watch did not break the connection.
        await using var next = await pool.OpenConnectionAsync();
        Assert.Equal(holderPid, await next.ExecuteScalarAsync<int>("SELECT pg_backend_pid()"));
        Assert.Equal(0L, await next.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"));
    }

    [Fact]
    public async Task Killing_the_holders_backend_fires_lock_lost_and_frees_the_lock()
    {
        var key = UniqueKey();
        await using var handle = await db.DataSource.AcquireAdvisoryLockAsync(key);
        var lost = new TaskCompletionSource();
        handle.LockLost.Register(() => lost.TrySetResult());

        var (classId, objId, _) = key.PgLocksCoordinates;
        await db.ExecuteAsync(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = @c::bigint::oid AND objid = @o::bigint::oid",
            new { c = (long)classId, o = (long)objId });

        await lost.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(handle.IsLost);
        await using var next = await db.DataSource.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(10));
        Assert.Equal(1, await db.AdvisoryHoldersAsync(key));
    }

    [Fact]
    public async Task Cancelling_a_waiting_session_acquire_leaves_no_lock_behind()
    {
        var key = UniqueKey();
        var holder = await db.DataSource.AcquireAdvisoryLockAsync(key);
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => db.DataSource.AcquireAdvisoryLockAsync(key, cancellationToken: cancel.Token));
        await holder.DisposeAsync();
        Assert.Equal(0, await db.AdvisoryHoldersAsync(key));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()"));
    }

    [Fact]
    public async Task The_int64_and_int_pair_key_spaces_do_not_collide()
    {
        var big = AdvisoryLockKey.FromInt64((123L << 32) | 456);
        var pair = AdvisoryLockKey.FromInt32Pair(123, 456);
        await using var a = await db.DataSource.TryAcquireAdvisoryLockAsync(big);
        await using var b = await db.DataSource.TryAcquireAdvisoryLockAsync(pair);
        Assert.NotNull(a);
        Assert.NotNull(b);
        Assert.Null(await db.DataSource.TryAcquireAdvisoryLockAsync(pair));
    }

    [Fact]
    public async Task A_transaction_held_handle_excludes_others_and_rollback_on_dispose_releases_it()
    {
        var key = UniqueKey();
        var handle = await db.DataSource.AcquireAdvisoryLockInTransactionAsync(key, TimeSpan.FromSeconds(5));
        Assert.True(handle.HeldByTransaction);
        Assert.Null(await db.DataSource.TryAcquireAdvisoryLockInTransactionAsync(key));
        Assert.Null(await db.DataSource.TryAcquireAdvisoryLockAsync(key));
        await Assert.ThrowsAsync<LockNotAvailableException>(() => db.DataSource.AcquireAdvisoryLockInTransactionAsync(key, TimeSpan.FromMilliseconds(100)));
        await handle.DisposeAsync();
        Assert.Equal(0, await db.AdvisoryHoldersAsync(key));
        await using var next = await db.DataSource.TryAcquireAdvisoryLockInTransactionAsync(key);
        Assert.NotNull(next);
    }

    [Fact]
    public async Task Bad_input_gets_clear_exceptions()
    {
        var key = UniqueKey();
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => db.DataSource.TryAcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(-2)));
        // TimeSpan.Zero used to be refused here; it now means "do not wait" in every entry point (AdvisoryTimeoutTests).
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => db.DataSource.AcquireAdvisoryLockAsync(key, TimeSpan.FromMilliseconds(-5)));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => db.DataSource.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(-1)));
        await Assert.ThrowsAsync<ArgumentNullException>(() => ((NpgsqlDataSource)null!).AcquireAdvisoryLockAsync(key));

        await using var connection = await db.DataSource.OpenConnectionAsync();
        var tx = await connection.BeginTransactionAsync();
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => tx.AcquireAdvisoryLockAsync(key, TimeSpan.FromSeconds(-3)));
        await tx.CommitAsync();
        await Assert.ThrowsAsync<InvalidOperationException>(() => tx.TryAcquireAdvisoryLockAsync(key));
        await Assert.ThrowsAsync<InvalidOperationException>(() => tx.AcquireAdvisoryLockAsync(key));

        var disposed = db.CreateDataSource(_ => { });
        await disposed.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => disposed.TryAcquireAdvisoryLockAsync(key));
        Assert.Equal(0, await db.AdvisoryHoldersAsync(key));
    }
}
