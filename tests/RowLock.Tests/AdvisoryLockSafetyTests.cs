using System.Diagnostics;
using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;
using Xunit.Abstractions;

namespace RowLock.Tests;

/// <summary>
/// The ways an advisory lock could outlive the code that thinks it released it (or never took it): a grant racing the
/// timeout, an unlock that fails, a connection that is not ours alone, a key two databases share.
/// </summary>
public sealed class AdvisoryLockSafetyTests(DatabaseFixture db, ITestOutputHelper output) : IClassFixture<DatabaseFixture>
{
    private const int Races = 600;
    private static readonly TimeSpan RaceTimeout = TimeSpan.FromMilliseconds(10);

    private static AdvisoryLockKey UniqueKey() => AdvisoryLockKey.FromName("safety-" + Guid.NewGuid());

    private async Task<long> HoldersAsync(AdvisoryLockKey key) =>
        await db.ScalarAsync<long>($"SELECT count(*) FROM pg_locks WHERE {key.PgLocksPredicate} AND granted");

    /// <summary>Releases the holder's lock about when the waiter's timeout fires: sometimes before, sometimes just after.</summary>
    private static async Task ReleaseNearTheTimeoutAsync(NpgsqlConnection holder, AdvisoryLockKey key, int race)
    {
        var releaseAt = TimeSpan.FromMilliseconds(6 + (race % 9)); // 6..14 ms around a 10 ms timeout
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < releaseAt)
        {
            await Task.Yield();
        }

        await holder.ExecuteAsync("SELECT pg_advisory_unlock(@k)", new { k = key.Value });
    }

    [Fact]
    public async Task Hundreds_of_timed_session_tries_racing_the_holders_release_leak_no_lock()
    {
        var key = UniqueKey();
        await using var pool = db.CreateDataSource(_ => { });
        var log = new RecordingLoggerProvider();
        using var loggerFactory = log.CreateFactory();
        var locks = new AdvisoryLocks(pool, loggerFactory);
        await using var holder = await db.DataSource.OpenConnectionAsync();
        int granted = 0, refused = 0, leaked = 0;
        for (var race = 0; race < Races; race++)
        {
            await holder.ExecuteAsync("SELECT pg_advisory_lock(@k)", new { k = key.Value });
            var attempt = locks.TryAcquireAsync(key, RaceTimeout);
            await ReleaseNearTheTimeoutAsync(holder, key, race);
            var handle = await attempt;
            if (handle is not null)
            {
                granted++;
                await handle.DisposeAsync();
            }
            else
            {
                refused++;
            }

            // Nobody holds a handle now, so nobody may hold the lock.
            if (await HoldersAsync(key) > 0)
            {
                leaked++;
                pool.Clear(); // closes the idle connection that kept the lock, so the next race can start
            }
        }

        var grantedAtTimeout = log.Entries.Count(e => e.EventId == RowLockEventIds.AdvisoryLockGrantedAtTimeout);
        output.WriteLine($"{Races} timed session tries: {granted} granted ({grantedAtTimeout} just as the timeout fired), {refused} refused, {leaked} leaked.");
        Assert.True(granted > 0 && refused > 0, $"The races should go both ways: {granted} granted, {refused} refused.");
        Assert.True(leaked == 0, $"{leaked} of {Races} timed tries ({granted} granted, {refused} refused) left the lock held by a pooled connection.");
    }

    [Fact]
    public async Task Hundreds_of_timed_transaction_tries_racing_the_holders_release_leak_no_lock()
    {
        var key = UniqueKey();
        await using var holder = await db.DataSource.OpenConnectionAsync();
        await using var waiter = await db.DataSource.OpenConnectionAsync();
        int granted = 0, refused = 0, heldAfterRefusal = 0;
        for (var race = 0; race < Races; race++)
        {
            await holder.ExecuteAsync("SELECT pg_advisory_lock(@k)", new { k = key.Value });
            await using var tx = await waiter.BeginTransactionAsync();
            var attempt = tx.AcquireAdvisoryLockAsync(key, RaceTimeout);
            await ReleaseNearTheTimeoutAsync(holder, key, race);
            try
            {
                await attempt;
                granted++;
            }
            catch (LockNotAvailableException)
            {
                refused++;
                if (await waiter.ExecuteScalarAsync<long>($"SELECT count(*) FROM pg_locks WHERE {key.PgLocksPredicate} AND pid = pg_backend_pid()", transaction: tx) > 0)
                {
                    heldAfterRefusal++;
                }
            }

            await tx.RollbackAsync();
        }

        output.WriteLine($"{Races} timed transaction tries: {granted} granted, {refused} refused, {heldAfterRefusal} held after refusal.");
        Assert.True(granted > 0 && refused > 0, $"The races should go both ways: {granted} granted, {refused} refused.");
        Assert.Equal(0, heldAfterRefusal);
        Assert.Equal(0, await HoldersAsync(key));
    }

    [Fact]
    public async Task A_handle_whose_unlock_fails_closes_its_connection_instead_of_pooling_it()
    {
        // On this data source's search path, pg_advisory_unlock is a function that always fails.
        var schema = await CreateFailingSchemaAsync("pg_advisory_unlock(bigint) RETURNS boolean");
        await using var pool = db.CreateDataSource(b => b.SearchPath = schema + ", pg_catalog");
        var key = UniqueKey();
        var handle = await pool.AcquireAdvisoryLockAsync(key);
        var pid = await HolderPidAsync(key);

        await handle.DisposeAsync();

        await AssertBackendGoneAsync(pid);
        Assert.Equal(0, await HoldersAsync(key));
    }

    [Fact]
    public async Task A_handle_whose_unlock_and_self_termination_fail_still_closes_its_connection()
    {
        // Here even pg_terminate_backend fails: the last resort must not need the server's help.
        var schema = await CreateFailingSchemaAsync("pg_advisory_unlock(bigint) RETURNS boolean", "pg_advisory_unlock_all() RETURNS void", "pg_terminate_backend(integer, bigint) RETURNS boolean", "pg_terminate_backend(integer) RETURNS boolean");
        await using var pool = db.CreateDataSource(b => b.SearchPath = schema + ", pg_catalog");
        var key = UniqueKey();
        var handle = await pool.AcquireAdvisoryLockAsync(key);
        var pid = await HolderPidAsync(key);

        await handle.DisposeAsync();

        await AssertBackendGoneAsync(pid);
        Assert.Equal(0, await HoldersAsync(key));
    }

    [Fact]
    public async Task A_multiplexing_data_source_is_refused_before_anything_is_locked()
    {
        await using var multiplexing = db.CreateDataSource(b => b.Multiplexing = true);
        var key = UniqueKey();
        await Assert.ThrowsAsync<NotSupportedException>(() => multiplexing.TryAcquireAdvisoryLockAsync(key));
        await Assert.ThrowsAsync<NotSupportedException>(() => multiplexing.AcquireAdvisoryLockAsync(key));
        await Assert.ThrowsAsync<NotSupportedException>(() => multiplexing.TryAcquireAdvisoryLockInTransactionAsync(key));
        await Assert.ThrowsAsync<NotSupportedException>(() => multiplexing.AcquireAdvisoryLockInTransactionAsync(key));
        Assert.Equal(0, await HoldersAsync(key));
    }

    [Fact]
    public async Task The_pg_locks_predicate_finds_only_the_lock_in_the_current_database()
    {
        var key = UniqueKey();
        var otherDatabase = await db.Server.CreateDatabaseAsync("t");
        try
        {
            await using var other = NpgsqlDataSource.Create(otherDatabase);
            await using var there = await other.AcquireAdvisoryLockAsync(key);
            await using var here = await db.DataSource.AcquireAdvisoryLockAsync(key); // advisory locks are per database
            await using var connection = await db.DataSource.OpenConnectionAsync();
            var herePid = await HolderPidAsync(key);
            Assert.Equal([herePid], (await connection.QueryAsync<int>($"SELECT pid FROM pg_locks WHERE {key.PgLocksPredicate} AND granted")).ToArray());
        }
        finally
        {
            await db.Server.DropDatabaseAsync(otherDatabase);
        }
    }

    private async Task<int> HolderPidAsync(AdvisoryLockKey key)
    {
        var (classId, objId, objSubId) = key.PgLocksCoordinates;
        return await db.ScalarAsync<int>(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) " +
            "AND classid = @c::bigint::oid AND objid = @o::bigint::oid AND objsubid = @s",
            new { c = (long)classId, o = (long)objId, s = (short)objSubId });
    }

    private async Task AssertBackendGoneAsync(int pid)
    {
        var deadline = Stopwatch.StartNew();
        while (await db.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE pid = @pid", new { pid }) > 0)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(20), $"Backend {pid} is still connected: its connection went back to the pool.");
            await Task.Delay(50);
        }
    }

    /// <summary>A schema holding functions that shadow pg_catalog's (when it comes first on the search path) and always fail.</summary>
    private async Task<string> CreateFailingSchemaAsync(params string[] signatures)
    {
        var schema = "failing_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE SCHEMA {schema}");
        foreach (var signature in signatures)
        {
            await db.ExecuteAsync($"CREATE FUNCTION {schema}.{signature} LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'refused by the test'; END$$");
        }

        return schema;
    }
}
