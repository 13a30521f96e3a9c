using Microsoft.Extensions.Logging;
using Npgsql;

namespace RowLock.Hosting.Internal;

/// <summary>
/// Session mode: the leader's own connection holds the advisory lock. A watch waits on the idle connection (a terminated
/// backend's FATAL or a closed socket ends the wait at once) and, after <see cref="LeaderElectionOptions.KeepaliveInterval"/>
/// of silence, probes it with a query that also checks this session still holds the lock; a probe unanswered after
/// <see cref="LeaderElectionOptions.KeepaliveTimeout"/> is a loss (a silent partition).
/// </summary>
internal sealed class SessionTenure : LeaderTenure
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly NpgsqlConnection _connection;
    private readonly AdvisoryLockKey _key;
    private readonly LeaderElectionOptions _options;
    private readonly CancellationTokenSource _stop = new();
    private Task? _watch;

    public SessionTenure(NpgsqlDataSource dataSource, NpgsqlConnection connection, AdvisoryLockKey key, string name, long epoch,
        LeaderElectionOptions options, ILogger logger)
        : base(name, epoch, LeaderElectionMode.Session, logger, options.FencedTransactionIdleTimeout)
    {
        _dataSource = dataSource;
        _connection = connection;
        _key = key;
        _options = options;
    }

    public void Start() => _watch = Task.Run(WatchAsync);

    private async Task WatchAsync()
    {
        var stop = _stop.Token;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                // No LISTEN on this session: nothing arrives unless the server ends it (FATAL, then EOF), which throws here.
                await _connection.WaitAsync(_options.KeepaliveInterval, stop).ConfigureAwait(false);
                using var probeCancel = CancellationTokenSource.CreateLinkedTokenSource(stop);
                var probe = ProbeAsync(probeCancel.Token);
                var timeout = Task.Delay(_options.KeepaliveTimeout, stop);
                if (await Task.WhenAny(probe, timeout).ConfigureAwait(false) != probe)
                {
                    if (!stop.IsCancellationRequested)
                    {
                        DeclareLost($"the leader's session did not answer a keepalive probe within {_options.KeepaliveTimeout.TotalMilliseconds:F0} ms (network partition?)", null);
                    }

                    await probeCancel.CancelAsync().ConfigureAwait(false);
                    await ((Task)probe).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    return;
                }

                if (!await probe.ConfigureAwait(false))
                {
                    DeclareLost("the leader's session no longer holds the advisory lock (a pooler in transaction mode between client and server?)", null);
                    return;
                }

                Confirmed();
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Resigning.
        }
        catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException or OperationCanceledException or TimeoutException)
        {
            DeclareLost(Describe(e), e);
        }
    }

    private async Task<bool> ProbeAsync(CancellationToken cancellationToken)
    {
        var (classId, objId, _) = _key.PgLocksCoordinates;
        var command = new NpgsqlCommand(LeaderSql.HoldsLock, _connection)
        {
            Parameters = { new() { Value = (long)classId }, new() { Value = (long)objId } },
        };
        await using (command.ConfigureAwait(false))
        {
            return (bool)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }
    }

    internal static string Describe(Exception e) => e switch
    {
        PostgresException { SqlState: PostgresErrorCodes.AdminShutdown } p => $"the server terminated the leader's backend ({p.SqlState}: {p.MessageText})",
        PostgresException { SqlState: PostgresErrorCodes.IdleSessionTimeout } p => $"the server ended the leader's silent session ({p.SqlState}: {p.MessageText})",
        PostgresException p => $"the leader's session ended ({p.SqlState}: {p.MessageText})",
        _ => $"the leader's connection broke ({e.GetType().Name}: {e.Message})",
    };

    protected override async Task StopAsync(bool resign)
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_watch is not null)
        {
            await _watch.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        try
        {
            if (resign && _connection.FullState == System.Data.ConnectionState.Open)
            {
                try
                {
                    await ReleaseAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException or TimeoutException)
                {
                    LeaderLog.ResignFailed(Logger, Name, Epoch, e);
                    await SessionConnections.DiscardAsync(_dataSource, _connection).ConfigureAwait(false);
                }
            }
            else if (_connection.FullState == System.Data.ConnectionState.Open)
            {
                // Lost while the socket is still open (a probe timed out, or the lock vanished): this session must never go
                // back to the pool, where it might still hold the lock.
                await SessionConnections.DiscardAsync(_dataSource, _connection).ConfigureAwait(false);
            }
        }
        finally
        {
            await _connection.DisposeAsync().ConfigureAwait(false);
            _stop.Dispose();
        }
    }

    /// <summary>One round trip: mark the resignation, unlock (the server grants the lock to a waiting follower at once), notify, reset the session.</summary>
    private async Task ReleaseAsync()
    {
        var batch = new NpgsqlBatch(_connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand(LeaderSql.MarkReleased) { Parameters = { new() { Value = Name }, new() { Value = Epoch } } },
                new NpgsqlBatchCommand("SELECT pg_advisory_unlock($1)") { Parameters = { new() { Value = _key.Value } } },
                new NpgsqlBatchCommand(LeaderSql.Notify) { Parameters = { new() { Value = Name } } },
                new NpgsqlBatchCommand("RESET ALL"),
            },
            Timeout = SessionConnections.Seconds(_options.KeepaliveTimeout),
        };
        await using (batch.ConfigureAwait(false))
        {
            await batch.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }
}
