using Dapper;
using Npgsql;
using RowLock.Hosting;

namespace RowLock.Tests.Leader;

public static class LeaderTestKit
{
    public static readonly TimeSpan Guard = TimeSpan.FromSeconds(60);

    /// <summary>Short timings so faults resolve in seconds; generous enough for a saturated 2-core machine.</summary>
    public static LeaderElectionOptions FastOptions(string instance) => new()
    {
        KeepaliveInterval = TimeSpan.FromMilliseconds(500),
        KeepaliveTimeout = TimeSpan.FromSeconds(2),
        SessionTimeout = TimeSpan.FromSeconds(5),
        FollowerWaitSlice = TimeSpan.FromSeconds(10),
        RetryDelay = TimeSpan.FromMilliseconds(200),
        InstanceName = instance,
    };

    public static string UniqueName(string prefix) => $"{prefix}-{Guid.NewGuid():N}";

    public static async Task<bool> WhenCancelledAsync(CancellationToken token, TimeSpan guard)
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var registration = token.Register(() => cancelled.TrySetResult());
        return await Task.WhenAny(cancelled.Task, Task.Delay(guard)) == cancelled.Task;
    }

    /// <summary>Terminates the backend that holds the election's advisory lock; returns how many were terminated.</summary>
    public static async Task<int> TerminateLeaderBackendAsync(NpgsqlDataSource admin, string name)
    {
        var (classId, objId, _) = AdvisoryLockKey.FromName(name).PgLocksCoordinates;
        await using var connection = await admin.OpenConnectionAsync();
        return await connection.ExecuteScalarAsync<int>(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND classid = @c::bigint::oid AND objid = @o::bigint::oid",
            new { c = (long)classId, o = (long)objId });
    }

    /// <summary>After every candidate stopped: nobody holds the election's lock and no session of this database is idle in a transaction.</summary>
    public static async Task AssertNothingLeakedAsync(NpgsqlDataSource admin, string name)
    {
        var (classId, objId, _) = AdvisoryLockKey.FromName(name).PgLocksCoordinates;
        await using var connection = await admin.OpenConnectionAsync();
        var held = await connection.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND classid = @c::bigint::oid AND objid = @o::bigint::oid",
            new { c = (long)classId, o = (long)objId });
        Assert.Equal(0, held);
        var idleInTransaction = await connection.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'");
        Assert.Equal(0, idleInTransaction);
        var tagged = await connection.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'rowlock-leader:%'");
        Assert.Equal(0, tagged);
    }
}
