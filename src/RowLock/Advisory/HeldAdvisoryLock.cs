using Microsoft.Extensions.Logging;
using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// Everything an <see cref="AdvisoryLockHandle"/> needs to watch and release its lock, kept apart from the handle so
/// that the watch (a pending read on the socket) never keeps the handle reachable: a handle nobody disposes can be
/// collected, and its finalizer hands the release to this object.
/// </summary>
internal sealed class HeldAdvisoryLock
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly NpgsqlConnection _connection;
    private readonly NpgsqlTransaction? _transaction;
    private readonly ILogger _logger;
    private readonly AdvisoryLockKey[]? _keys; // several locks on one session (AcquireAdvisoryLocksAsync), in the order taken
    private readonly SemaphoreKey? _semaphore; // Key is a slot of this semaphore: its release wakes a waiter
    private CancellationTokenSource? _lost; // made by the first Watch(), with the monitor: an unwatched handle costs neither
    private CancellationTokenSource? _stopMonitor;
    private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _gate = new();
    private readonly long _acquiredAt = System.Diagnostics.Stopwatch.GetTimestamp(); // built right after the grant: rowlock.lock.hold.duration
    private Task? _monitor;
    private bool _releasing;
    private int _disposed;

    public HeldAdvisoryLock(NpgsqlDataSource dataSource, NpgsqlConnection connection, AdvisoryLockKey key, AdvisoryLockMode mode, ILogger logger,
        NpgsqlTransaction? transaction)
    {
        _dataSource = dataSource;
        _connection = connection;
        _transaction = transaction;
        Key = key;
        Mode = mode;
        _logger = logger;
    }

    /// <summary>A session-held semaphore slot: released with <see cref="SemaphoreSql.Release"/>.</summary>
    public HeldAdvisoryLock(NpgsqlDataSource dataSource, NpgsqlConnection connection, SemaphoreKey semaphore, int slot, ILogger logger)
        : this(dataSource, connection, semaphore.SlotKey(slot), AdvisoryLockMode.Exclusive, logger, transaction: null) => _semaphore = semaphore;

    /// <summary>Several session-held locks, taken in the order of <paramref name="keys"/> (at least one).</summary>
    public HeldAdvisoryLock(NpgsqlDataSource dataSource, NpgsqlConnection connection, AdvisoryLockKey[] keys, AdvisoryLockMode mode, ILogger logger)
        : this(dataSource, connection, keys[0], mode, logger, transaction: null) => _keys = keys.Length > 1 ? keys : null;

    public AdvisoryLockKey Key { get; }

    public IReadOnlyList<AdvisoryLockKey> Keys => _keys ?? [Key];

    public AdvisoryLockMode Mode { get; }

    public bool HeldByTransaction => _transaction is not null;

    public bool IsLost => Volatile.Read(ref _lost)?.IsCancellationRequested == true;

    /// <summary>
    /// The token cancelled when the lock is lost. The first call starts watching the connection: until someone asks,
    /// a handle costs no token source, no task and no pending read (Npgsql's own keepalive timer covers an unwatched idle connection).
    /// </summary>
    public CancellationToken Watch() => (Volatile.Read(ref _lost) ?? StartWatching()).Token;

    private CancellationTokenSource StartWatching()
    {
        lock (_gate)
        {
            if (_lost is { } existing)
            {
                return existing;
            }

            // A handle already being released has nothing left to watch: its token just stays uncancelled.
            var lost = new CancellationTokenSource();
            if (!_releasing)
            {
                var stop = new CancellationTokenSource();
                _stopMonitor = stop;
                _monitor = Task.Run(() => MonitorAsync(lost, stop));
            }

            Volatile.Write(ref _lost, lost);
            return lost;
        }
    }

    /// <summary>Releases the lock exactly once; concurrent and later callers wait for that release.</summary>
    public async Task ReleaseAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            await _released.Task.ConfigureAwait(false);
            return;
        }

        Task? monitor;
        CancellationTokenSource? stopMonitor;
        lock (_gate)
        {
            _releasing = true;
            monitor = _monitor;
            stopMonitor = _stopMonitor;
        }

        try
        {
            if (monitor is not null)
            {
                await stopMonitor!.CancelAsync().ConfigureAwait(false);
                await monitor.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            if (!IsLost)
            {
                await UnlockAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            try
            {
                try
                {
                    if (_transaction is not null)
                    {
                        await _transaction.DisposeAsync().ConfigureAwait(false);
                    }
                }
                finally
                {
                    // Even when the transaction's dispose fails, the connection goes back (or is closed): no pool slot leaks.
                    await _connection.DisposeAsync().ConfigureAwait(false);
                }
            }
            finally
            {
                stopMonitor?.Dispose();
                _released.TrySetResult();
                RowLockHistograms.RecordLockHold(_acquiredAt, Mode, HeldByTransaction); // last: a metrics listener that throws cannot stop the release
            }
        }
    }

    /// <summary>Called by the finalizer of a handle nobody disposed: releases the lock on the thread pool.</summary>
    public void ReleaseAbandoned()
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            _ = Task.Run(async () =>
            {
                await ReleaseAsync().ConfigureAwait(false);
                AdvisoryLog.Abandoned(_logger, Key, Mode);
            });
        }
    }

    private async Task UnlockAsync()
    {
        // LockConnection.ReleaseOrDiscardAsync written out: every handle releases, and a closure and two more state
        // machines per release showed up in the advisory benchmark's allocations.
        var released = false;
        Exception? failure = null;
        try
        {
            if (_transaction is not null)
            {
                // A transaction-scoped lock ends with its transaction.
                await _transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
                released = true;
            }
            else if (_semaphore is { } semaphore)
            {
                var command = SemaphoreSql.Command(SemaphoreSql.Release, semaphore, Key.Key2, _connection, transaction: null);
                await using (command.ConfigureAwait(false))
                {
                    released = (bool)(await command.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false))!;
                }
            }
            else if (_keys is { } keys)
            {
                released = await UnlockAllAsync(keys).ConfigureAwait(false);
            }
            else
            {
                var command = AdvisorySql.Command(AdvisorySql.Unlock(Mode), Key, _connection, transaction: null);
                await using (command.ConfigureAwait(false))
                {
                    released = (bool)(await command.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false))!;
                }
            }
        }
        catch (Exception e) when (LockConnection.IsReleaseFailure(e))
        {
            await LockConnection.DiscardAsync(_dataSource, _connection).ConfigureAwait(false);
            failure = e;
        }

        // Logged after the fact, so that a logger that throws cannot stop the release.
        if (failure is not null)
        {
            // Whatever state the session was in, it was not returned to the pool while it may hold the lock.
            AdvisoryLog.ReleaseFailed(_logger, Key, failure);
        }
        else if (released)
        {
            AdvisoryLog.Released(_logger, Key, Mode);
        }
        else
        {
            AdvisoryLog.NotHeldAtRelease(_logger, Key);
        }
    }

    /// <summary>How long one wait of the monitor lasts when the connection string has no KeepAlive (see <see cref="MonitorAsync"/>).</summary>
    internal const int WaitSliceMilliseconds = 1000;
    /// <summary>Unlocks several locks in the reverse of the order they were taken, in one round trip; true when all were held.</summary>
    private async Task<bool> UnlockAllAsync(AdvisoryLockKey[] keys)
    {
        var batch = new NpgsqlBatch(_connection);
        await using (batch.ConfigureAwait(false))
        {
            for (var i = keys.Length - 1; i >= 0; i--)
            {
                batch.BatchCommands.Add(AdvisorySql.Call(AdvisorySql.Unlock(Mode), keys[i]));
            }

            var all = true;
            var reader = await batch.ExecuteReaderAsync(CancellationToken.None).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                do
                {
                    while (await reader.ReadAsync(CancellationToken.None).ConfigureAwait(false))
                    {
                        all &= reader.GetBoolean(0);
                    }
                }
                while (await reader.NextResultAsync(CancellationToken.None).ConfigureAwait(false));
            }

            return all;
        }
    }

    /// <summary>
    /// Waits on the idle connection for anything the server sends. A terminated backend sends a FATAL error and closes
    /// the socket, which ends the wait with an exception: that is the moment the lock is gone. Cancelling the wait is how
    /// <see cref="ReleaseAsync"/> stops it, but Npgsql can lose that cancellation: a cancel that lands after WaitAsync's
    /// own cancellation check and before its socket read starts is dropped when the read arms a fresh token source
    /// (ResettableCancellationTokenSource.Start/Reset replace a cancelled source), and an unbounded wait then never ends.
    /// So the wait is never unbounded: without KeepAlive it lasts <see cref="WaitSliceMilliseconds"/> and loops (a timed-out
    /// wait is a client-side timer, nothing is sent); with KeepAlive, Npgsql's wait sends a keepalive every interval and checks
    /// the token after it, which bounds a lost cancel to one interval while keeping the keepalive.
    /// </summary>
    private async Task MonitorAsync(CancellationTokenSource lost, CancellationTokenSource stop)
    {
        try
        {
            var slice = new NpgsqlConnectionStringBuilder(_connection.ConnectionString).KeepAlive > 0 ? 0 : WaitSliceMilliseconds;
            while (!stop.IsCancellationRequested)
            {
                await _connection.WaitAsync(slice, stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Releasing: stop watching.
        }
        catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException or OperationCanceledException)
        {
            await lost.CancelAsync().ConfigureAwait(false);
            AdvisoryLog.Lost(_logger, Key, e);
        }
    }
}
