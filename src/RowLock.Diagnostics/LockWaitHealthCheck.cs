using System.Globalization;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace RowLock;

/// <summary>
/// Healthy while no session of the database has waited on a lock longer than
/// <see cref="LockWaitHealthCheckOptions.Threshold"/>; Degraded otherwise, naming the longest waiter, what it waits for
/// and its root blocker (the session to look at, or to end). One snapshot query per check; takes no locks.
/// When the snapshot itself fails, the registration's failure status is reported with the exception.
/// </summary>
public sealed class LockWaitHealthCheck : IHealthCheck
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly LockWaitHealthCheckOptions _options;

    /// <summary>A check on <paramref name="dataSource"/>'s database.</summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The threshold is not positive.</exception>
    public LockWaitHealthCheck(NpgsqlDataSource dataSource, LockWaitHealthCheckOptions options)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.Threshold, TimeSpan.Zero, nameof(options.Threshold));
        _dataSource = dataSource;
        _options = options;
    }

    /// <inheritdoc/>
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        LockWaitSnapshot snapshot;
        try
        {
            snapshot = await _dataSource.GetLockWaitSnapshotAsync(
                new LockWaitSnapshotOptions { AdvisoryKeyNames = _options.AdvisoryKeyNames, LongestTransactionCount = 0, MaxQueryLength = 200 },
                cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            return new HealthCheckResult(context.Registration.FailureStatus, "Could not read the lock waits.", e);
        }

        var longest = snapshot.Waiting
            .Where(w => w.WaitDuration > _options.Threshold)
            .OrderByDescending(w => w.WaitDuration)
            .ThenBy(w => w.Pid)
            .FirstOrDefault();
        var data = new Dictionary<string, object>
        {
            ["waiting"] = snapshot.Waiting.Count,
            ["deadlocks"] = snapshot.Deadlocks ?? -1,
        };
        if (longest is null)
        {
            return HealthCheckResult.Healthy(
                string.Create(CultureInfo.InvariantCulture, $"No session has waited on a lock longer than {LockWaitText.Duration(_options.Threshold)} ({snapshot.Waiting.Count} waiting now)."),
                data);
        }

        var root = longest.RootBlocker is { } rootPid ? snapshot.Session(rootPid) : null;
        data["longest_waiter_pid"] = longest.Pid;
        data["longest_wait_seconds"] = Math.Round(longest.WaitDuration!.Value.TotalSeconds, 1);
        var description = LockWaitText.Who(longest) + " has waited " + LockWaitText.Duration(longest.WaitDuration) + " for " + longest.WaitingFor;
        if (root is not null)
        {
            if (root.IsPreparedTransaction)
            {
                data["root_blocker_prepared_transaction"] = root.PreparedTransactionId ?? "";
            }
            else
            {
                data["root_blocker_pid"] = root.Pid;
            }

            data["root_blocker_holds_up"] = root.HoldsUp;
            if (!string.IsNullOrEmpty(root.ApplicationName))
            {
                data["root_blocker_application"] = root.ApplicationName;
            }

            if (root.IsInOtherDatabase && root.Database is not null)
            {
                data["root_blocker_database"] = root.Database;
            }

            description += "; root blocker " + LockWaitText.Who(root) + " " + LockWaitText.Doing(root) + LockWaitText.QuerySuffix(root);
        }

        return HealthCheckResult.Degraded(description, data: data);
    }
}
