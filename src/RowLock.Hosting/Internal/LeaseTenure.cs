using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace RowLock.Hosting.Internal;

/// <summary>
/// Lease mode: the leader renews its lease every <see cref="LeaderElectionOptions.LeaseRenewInterval"/> with one autocommit
/// UPDATE on a pooled connection (so it works through PgBouncer transaction pooling). The leader counts its lease from the
/// moment it sent the last successful renewal (the server started the new term later, so the client's view ends first),
/// minus a margin; if no renewal succeeds before that, or a renewal finds the lease gone, the leadership is lost.
/// </summary>
internal sealed class LeaseTenure : LeaderTenure
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly LeaderElectionOptions _options;
    private readonly CancellationTokenSource _stop = new();
    private long _validUntil; // Stopwatch timestamp
    private Task? _renewals;

    public LeaseTenure(NpgsqlDataSource dataSource, string name, long epoch, long sentAt, LeaderElectionOptions options, ILogger logger)
        : base(name, epoch, LeaderElectionMode.Lease, logger, options.FencedTransactionIdleTimeout)
    {
        _dataSource = dataSource;
        _options = options;
        _validUntil = ValidUntil(sentAt);
    }

    private TimeSpan Margin => _options.LeaseRenewInterval / 2;

    private long ValidUntil(long sentAt) => sentAt + (long)((_options.LeaseDuration - Margin).TotalSeconds * Stopwatch.Frequency);

    public void Start() => _renewals = Task.Run(RenewAsync);

    private async Task RenewAsync()
    {
        var stop = _stop.Token;
        try
        {
            var nextRenewal = Stopwatch.GetTimestamp() + (long)(_options.LeaseRenewInterval.TotalSeconds * Stopwatch.Frequency);
            while (!stop.IsCancellationRequested)
            {
                var wait = Until(Math.Min(nextRenewal, _validUntil));
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, stop).ConfigureAwait(false);
                }

                var remaining = Until(_validUntil);
                if (remaining <= TimeSpan.Zero)
                {
                    DeclareLost($"no lease renewal succeeded in time: the lease of {_options.LeaseDuration.TotalSeconds:F1} s may have expired", null);
                    return;
                }

                var sentAt = Stopwatch.GetTimestamp();
                var renewal = RenewOnceAsync(stop);
                if (await Task.WhenAny(renewal, Task.Delay(remaining, stop)).ConfigureAwait(false) != renewal)
                {
                    if (!stop.IsCancellationRequested)
                    {
                        DeclareLost("the lease renewal did not answer before the lease ran out (network partition?)", null);
                    }

                    await ((Task)renewal).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    return;
                }

                bool renewed;
                try
                {
                    renewed = await renewal.ConfigureAwait(false);
                }
                catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException || (e is OperationCanceledException && !stop.IsCancellationRequested))
                {
                    // Try again soon; the lease still has time.
                    nextRenewal = Stopwatch.GetTimestamp() + (long)(Math.Min(_options.RetryDelay.TotalSeconds, _options.LeaseRenewInterval.TotalSeconds / 4) * Stopwatch.Frequency);
                    continue;
                }

                if (!renewed)
                {
                    DeclareLost("the lease is gone: it expired and another instance took it, or the epoch moved", null);
                    return;
                }

                Volatile.Write(ref _validUntil, ValidUntil(sentAt));
                Confirmed();
                nextRenewal = sentAt + (long)(_options.LeaseRenewInterval.TotalSeconds * Stopwatch.Frequency);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Resigning.
        }
    }

    private static TimeSpan Until(long timestamp)
    {
        var ticks = timestamp - Stopwatch.GetTimestamp();
        return ticks <= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds((double)ticks / Stopwatch.Frequency);
    }

    private async Task<bool> RenewOnceAsync(CancellationToken cancellationToken)
    {
        var command = _dataSource.CreateCommand(LeaderSql.RenewLease);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = Name });
            command.Parameters.Add(new NpgsqlParameter { Value = Epoch });
            command.Parameters.Add(new NpgsqlParameter { Value = (long)_options.LeaseDuration.TotalMilliseconds });
            command.CommandTimeout = SessionConnections.Seconds(_options.LeaseDuration);
            return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not null;
        }
    }

    protected override async Task StopAsync(bool resign)
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_renewals is not null)
        {
            await _renewals.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        _stop.Dispose();
        if (!resign)
        {
            return;
        }

        try
        {
            var batch = _dataSource.CreateBatch();
            await using (batch.ConfigureAwait(false))
            {
                batch.BatchCommands.Add(new NpgsqlBatchCommand(LeaderSql.ReleaseLease) { Parameters = { new() { Value = Name }, new() { Value = Epoch } } });
                batch.BatchCommands.Add(new NpgsqlBatchCommand(LeaderSql.Notify) { Parameters = { new() { Value = Name } } });
                batch.Timeout = SessionConnections.Seconds(_options.LeaseRenewInterval);
                await batch.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException or TimeoutException)
        {
            // The lease then simply expires.
            LeaderLog.ResignFailed(Logger, Name, Epoch, e);
        }
    }
}
