using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using RowLock.Hosting.Internal;

namespace RowLock.Hosting;

/// <summary>
/// Reports whether the election has a leader now, as the database sees it (session mode: some session holds the
/// election's advisory lock; lease mode: the lease has not expired). Healthy when a leader is known, with its epoch and
/// holder in the data; the registration's failure status when there is none or the database cannot be asked.
/// </summary>
public sealed class LeaderHealthCheck : IHealthCheck
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly string _name;
    private readonly LeaderElectionMode _mode;

    /// <summary>Creates the check for the election <paramref name="name"/>.</summary>
    /// <param name="dataSource">The database the election uses.</param>
    /// <param name="name">The election's name.</param>
    /// <param name="mode">How the election holds leadership.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is null or empty.</exception>
    public LeaderHealthCheck(NpgsqlDataSource dataSource, string name, LeaderElectionMode mode = LeaderElectionMode.Session)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentException.ThrowIfNullOrEmpty(name);
        _dataSource = dataSource;
        _name = name;
        _mode = mode;
    }

    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var failure = context.Registration?.FailureStatus ?? HealthStatus.Unhealthy;
        try
        {
            var command = _dataSource.CreateCommand(_mode == LeaderElectionMode.Session ? LeaderSql.SessionStatus : LeaderSql.LeaseStatus);
            await using (command.ConfigureAwait(false))
            {
                command.Parameters.Add(new NpgsqlParameter { Value = _name });
                if (_mode == LeaderElectionMode.Session)
                {
                    var (classId, objId, _) = AdvisoryLockKey.FromName(_name).PgLocksCoordinates;
                    command.Parameters.Add(new NpgsqlParameter { Value = (long)classId });
                    command.Parameters.Add(new NpgsqlParameter { Value = (long)objId });
                }

                var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        return new HealthCheckResult(failure, $"No leader of '{_name}': no instance has ever led it.");
                    }

                    var epoch = reader.GetInt64(0);
                    var holder = reader.IsDBNull(1) ? null : reader.GetString(1);
                    var leads = reader.GetBoolean(2);
                    var data = new Dictionary<string, object> { ["name"] = _name, ["epoch"] = epoch, ["holder"] = holder ?? "" };
                    return leads
                        ? HealthCheckResult.Healthy($"'{_name}' is led by {holder} (epoch {epoch}).", data)
                        : new HealthCheckResult(failure, $"No leader of '{_name}' now (last: {holder}, epoch {epoch}).", data: data);
                }
            }
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            return new HealthCheckResult(failure, $"No leader of '{_name}': the table {LeaderSql.Table} does not exist yet.", e);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            return new HealthCheckResult(failure, $"Could not ask the database who leads '{_name}'.", e);
        }
    }
}
