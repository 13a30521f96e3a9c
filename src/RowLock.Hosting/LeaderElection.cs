using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using RowLock.Hosting.Internal;

namespace RowLock.Hosting;

/// <summary>
/// Leader election for one name among every instance that uses the same name and database. In
/// <see cref="LeaderElectionMode.Session"/> mode the leader holds a session advisory lock (key
/// <see cref="AdvisoryLockKey.FromName"/> of the name) on a dedicated connection with no transaction open, tagged
/// <c>application_name = 'rowlock-leader:&lt;name&gt;'</c>; followers wait on the lock in <c>pg_advisory_lock</c>. In
/// <see cref="LeaderElectionMode.Lease"/> mode the leader holds a renewed lease in the epochs table. Either way, each new
/// leader increments the name's epoch in <c>rowlock_leader_epochs</c>, in the same session, before it leads.
/// </summary>
/// <remarks>
/// Keep one per name per process (the hosting extension does). Never re-acquire to "renew": a held leadership is
/// watched, not refreshed (session locks stack, so a second <c>pg_advisory_lock</c> would need two unlocks).
/// </remarks>
public sealed class LeaderElection : ILeaderElection
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly LeaderElectionOptions _options;
    private readonly ILogger _logger;
    private readonly AdvisoryLockKey _key;
    private readonly string _applicationName;
    private volatile bool _tableReady;
    private Leadership? _current;

    /// <summary>Creates an election for <paramref name="name"/> over a data source.</summary>
    /// <param name="dataSource">Where the election's connections come from (must not multiplex).</param>
    /// <param name="name">The election's name: every instance that uses it competes for one leadership.</param>
    /// <param name="options">Settings; null keeps the defaults. Copied: later changes to the object change nothing.</param>
    /// <param name="loggerFactory">Where to log (category <c>RowLock.Hosting.LeaderElection</c>); null logs nothing.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> or <paramref name="name"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty, or a setting is out of range.</exception>
    public LeaderElection(NpgsqlDataSource dataSource, string name, LeaderElectionOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentException.ThrowIfNullOrEmpty(name);
        var source = options ?? new LeaderElectionOptions();
        source.Validate();
        _options = Copy(source);
        _dataSource = dataSource;
        Name = name;
        _key = AdvisoryLockKey.FromName(name);
        _applicationName = LeaderSql.ApplicationName(name);
        InstanceName = _options.InstanceName
            ?? $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid().ToString("N")[..8]}";
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger(LeaderLog.Category);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <summary>Who this instance is in the epochs table's <c>holder</c> column.</summary>
    public string InstanceName { get; }

    /// <summary>Session or lease.</summary>
    public LeaderElectionMode Mode => _options.Mode;

    /// <inheritdoc />
    public Leadership? Current => Volatile.Read(ref _current) is { IsLost: false } current ? current : null;

    /// <summary>True while this instance leads.</summary>
    public bool IsLeader => Current is not null;

    /// <inheritdoc />
    public async Task<Leadership> AcquireAsync(CancellationToken cancellationToken = default)
    {
        var failures = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            EnsureNotLeading();
            if (_options.CanLead?.Invoke() == false)
            {
                await Task.Delay(Jittered(_options.RetryDelay), cancellationToken).ConfigureAwait(false);
                continue;
            }

            Leadership? won;
            try
            {
                won = await AttemptAsync(wait: true, cancellationToken).ConfigureAwait(false);
                failures = 0;
            }
            catch (Exception e) when (IsTransientFailure(e, cancellationToken))
            {
                var delay = Jittered(_options.RetryDelay * Math.Min(1 << Math.Min(failures++, 5), 10));
                LeaderLog.AttemptFailed(_logger, Name, (long)delay.TotalMilliseconds, e);
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                continue;
            }

            if (won is not null)
            {
                return won;
            }

            if (_options.Mode == LeaderElectionMode.Lease)
            {
                await Task.Delay(Jittered(_options.LeasePollInterval), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <inheritdoc />
    public Task<Leadership?> TryAcquireAsync(CancellationToken cancellationToken = default)
    {
        EnsureNotLeading();
        return _options.CanLead?.Invoke() == false ? Task.FromResult<Leadership?>(null) : AttemptAsync(wait: false, cancellationToken);
    }

    private void EnsureNotLeading()
    {
        if (Current is not null)
        {
            throw new InvalidOperationException(
                $"This election already leads '{Name}' (epoch {Current.Epoch}). Dispose that Leadership before acquiring again: a second acquire would wait on this instance's own lock.");
        }
    }

    private static bool IsTransientFailure(Exception e, CancellationToken cancellationToken) =>
        !cancellationToken.IsCancellationRequested
        && e is NpgsqlException or IOException or TimeoutException or System.Net.Sockets.SocketException
        || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested);

    private static TimeSpan Jittered(TimeSpan value) => value * (0.75 + (Random.Shared.NextDouble() * 0.5));

    private async Task<Leadership?> AttemptAsync(bool wait, CancellationToken cancellationToken)
    {
        var won = _options.Mode == LeaderElectionMode.Session
            ? await AttemptSessionAsync(wait, cancellationToken).ConfigureAwait(false)
            : await AttemptLeaseAsync(cancellationToken).ConfigureAwait(false);
        if (won is not null)
        {
            Volatile.Write(ref _current, won);
        }

        return won;
    }

    private async Task<Leadership?> AttemptSessionAsync(bool wait, CancellationToken cancellationToken)
    {
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var mayHoldLock = false;
        try
        {
            await PrepareSessionAsync(connection, wait, cancellationToken).ConfigureAwait(false);
            mayHoldLock = true;
            if (!await TakeLockAsync(connection, wait, cancellationToken).ConfigureAwait(false))
            {
                LeaderLog.Following(_logger, Name);
                await SessionConnections.ResetOrDiscardAsync(_dataSource, connection, _options.KeepaliveTimeout).ConfigureAwait(false);
                await connection.DisposeAsync().ConfigureAwait(false);
                return null;
            }

            await EnsureTableAsync(connection, cancellationToken).ConfigureAwait(false);
            var (epoch, takeover) = await IncrementEpochAsync(connection, cancellationToken).ConfigureAwait(false);
            var tenure = new SessionTenure(_dataSource, connection, _key, Name, epoch, _options, _logger);
            LeaderTelemetry.Acquired(Name, takeover);
            LeaderLog.Acquired(_logger, Name, InstanceName, epoch, LeaderElectionMode.Session);
            tenure.Start();
            return new Leadership(tenure);
        }
        catch
        {
            if (mayHoldLock)
            {
                await SessionConnections.ResetOrDiscardAsync(_dataSource, connection, _options.KeepaliveTimeout).ConfigureAwait(false);
            }

            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Tags the session, clears timeouts that would end the follower's wait or the leader's session early, sets
    /// <c>idle_session_timeout</c> (the server's own end for a partitioned leader), and refuses a pooler.
    /// </summary>
    private async Task PrepareSessionAsync(NpgsqlConnection connection, bool wait, CancellationToken cancellationToken)
    {
        // First the pooler check, before any session setting: through transaction pooling a SET would stay on a server
        // connection other clients get next.
        var pid = new NpgsqlCommand("SELECT pg_backend_pid()", connection);
        int serverPid;
        await using (pid.ConfigureAwait(false))
        {
            serverPid = (int)(await pid.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        if (serverPid != connection.ProcessID && !_options.AllowSessionModeBehindPooler)
        {
            throw new InvalidOperationException(
                $"Leader election '{Name}' refused a session lock: this connection goes through a pooler (the server's backend pid {serverPid} is not the pid {connection.ProcessID} the connection got at startup, as with PgBouncer). "
                + "Through transaction pooling a session advisory lock stays on a server connection the leader no longer owns. "
                + "Use LeaderElectionOptions.Mode = LeaderElectionMode.Lease, connect directly, or, if the pooler keeps one server session per client (PgBouncer pool_mode = session), set AllowSessionModeBehindPooler = true.");
        }

        var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("SELECT set_config('application_name', $1, false)") { Parameters = { new() { Value = _applicationName } } },
                new NpgsqlBatchCommand("SELECT set_config('statement_timeout', '0', false)"),
                new NpgsqlBatchCommand("SELECT set_config('lock_timeout', $1, false)")
                {
                    Parameters = { new() { Value = wait ? LeaderSql.Milliseconds(_options.FollowerWaitSlice) : "0" } },
                },
                new NpgsqlBatchCommand("SELECT set_config('idle_session_timeout', $1, false)")
                {
                    Parameters = { new() { Value = _options.SessionTimeout is { } t ? LeaderSql.Milliseconds(t) : "0" } },
                },
            },
        };
        await using (batch.ConfigureAwait(false))
        {
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<bool> TakeLockAsync(NpgsqlConnection connection, bool wait, CancellationToken cancellationToken)
    {
        var command = new NpgsqlCommand(wait ? "SELECT pg_advisory_lock($1)" : "SELECT pg_try_advisory_lock($1)", connection)
        {
            Parameters = { new() { Value = _key.Value } },
            // The server ends the wait after FollowerWaitSlice (lock_timeout); a client that hears nothing for longer is partitioned.
            CommandTimeout = wait ? SessionConnections.Seconds(_options.FollowerWaitSlice + _options.KeepaliveInterval + _options.KeepaliveTimeout) : SessionConnections.Seconds(_options.KeepaliveTimeout),
        };
        await using (command.ConfigureAwait(false))
        {
            try
            {
                var result = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
                return !wait ? (bool)result! : true;
            }
            catch (PostgresException e) when (wait && e.SqlState == PostgresErrorCodes.LockNotAvailable)
            {
                // The slice ended. The lock may have been granted just as lock_timeout fired: ask the server.
                return await HoldsLockAsync(connection, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private async Task<bool> HoldsLockAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var (classId, objId, _) = _key.PgLocksCoordinates;
        var command = new NpgsqlCommand(LeaderSql.HoldsLock, connection) { Parameters = { new() { Value = (long)classId }, new() { Value = (long)objId } } };
        await using (command.ConfigureAwait(false))
        {
            return (bool)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }
    }

    private async Task EnsureTableAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        if (_tableReady || !_options.CreateTable)
        {
            return;
        }

        var command = new NpgsqlCommand(LeaderSql.CreateTable, connection);
        await using (command.ConfigureAwait(false))
        {
            try
            {
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DuplicateTable)
            {
                // Another instance created it at the same moment (CREATE TABLE IF NOT EXISTS is not race-free).
            }
        }

        _tableReady = true;
    }

    private async Task<(long Epoch, double? TakeoverSeconds)> IncrementEpochAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("SELECT set_config('lock_timeout', '0', false)"),
                new NpgsqlBatchCommand(LeaderSql.EnsureRow) { Parameters = { new() { Value = Name } } },
                new NpgsqlBatchCommand(LeaderSql.IncrementEpoch) { Parameters = { new() { Value = Name }, new() { Value = InstanceName } } },
            },
        };
        await using (batch.ConfigureAwait(false))
        {
            var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    throw new InvalidOperationException($"The epoch row of '{Name}' vanished while it was incremented.");
                }

                return (reader.GetInt64(0), reader.IsDBNull(1) ? null : reader.GetDouble(1));
            }
        }
    }

    private async Task<Leadership?> AttemptLeaseAsync(CancellationToken cancellationToken)
    {
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            await EnsureTableAsync(connection, cancellationToken).ConfigureAwait(false);
            var sentAt = Stopwatch.GetTimestamp();
            var batch = new NpgsqlBatch(connection)
            {
                BatchCommands =
                {
                    new NpgsqlBatchCommand(LeaderSql.EnsureRow) { Parameters = { new() { Value = Name } } },
                    new NpgsqlBatchCommand(LeaderSql.TakeLease)
                    {
                        Parameters = { new() { Value = Name }, new() { Value = InstanceName }, new() { Value = (long)_options.LeaseDuration.TotalMilliseconds } },
                    },
                },
            };
            long epoch;
            double? takeover;
            await using (batch.ConfigureAwait(false))
            {
                var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        LeaderLog.Following(_logger, Name);
                        return null;
                    }

                    epoch = reader.GetInt64(0);
                    takeover = reader.IsDBNull(1) ? null : reader.GetDouble(1);
                }
            }

            var tenure = new LeaseTenure(_dataSource, Name, epoch, sentAt, _options, _logger);
            LeaderTelemetry.Acquired(Name, takeover);
            LeaderLog.Acquired(_logger, Name, InstanceName, epoch, LeaderElectionMode.Lease);
            tenure.Start();
            return new Leadership(tenure);
        }
    }

    private static LeaderElectionOptions Copy(LeaderElectionOptions o) => new()
    {
        Mode = o.Mode,
        KeepaliveInterval = o.KeepaliveInterval,
        KeepaliveTimeout = o.KeepaliveTimeout,
        SessionTimeout = o.SessionTimeout,
        FollowerWaitSlice = o.FollowerWaitSlice,
        AllowSessionModeBehindPooler = o.AllowSessionModeBehindPooler,
        LeaseDuration = o.LeaseDuration,
        LeaseRenewInterval = o.LeaseRenewInterval,
        LeasePollInterval = o.LeasePollInterval,
        FencedTransactionIdleTimeout = o.FencedTransactionIdleTimeout,
        RetryDelay = o.RetryDelay,
        CreateTable = o.CreateTable,
        InstanceName = o.InstanceName,
        CanLead = o.CanLead,
    };
}
