using Microsoft.Extensions.Logging;
using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// A session-level advisory lock held on a connection this handle owns. The lock is held until
/// <see cref="DisposeAsync"/> unlocks it explicitly (Npgsql's pool does not release session locks when a connection
/// goes back to it) or until the connection dies, which <see cref="LockLost"/> reports at once.
/// </summary>
/// <remarks>
/// Session locks need a real session: they do not work behind PgBouncer in transaction pooling mode. Release happens
/// exactly once, even when <see cref="DisposeAsync"/> is called concurrently.
/// </remarks>
public sealed class AdvisoryLockHandle : IAsyncDisposable
{
    private static readonly TimeSpan MonitorSlice = TimeSpan.FromSeconds(1);
    private readonly NpgsqlConnection _connection;
    private readonly NpgsqlTransaction? _transaction;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _lost = new();
    private readonly CancellationTokenSource _stopMonitor = new();
    private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _monitor;
    private int _disposed;

    internal AdvisoryLockHandle(NpgsqlConnection connection, AdvisoryLockKey key, AdvisoryLockMode mode, ILogger logger, NpgsqlTransaction? transaction = null)
    {
        _connection = connection;
        _transaction = transaction;
        Key = key;
        Mode = mode;
        _logger = logger;
        _monitor = MonitorAsync();
    }

    /// <summary>The lock's key.</summary>
    public AdvisoryLockKey Key { get; }

    /// <summary>Exclusive or shared.</summary>
    public AdvisoryLockMode Mode { get; }

    /// <summary>
    /// Cancelled when the handle's connection dies (the backend was terminated, the server restarted, the network broke):
    /// the server has then released the lock and someone else may hold it. Pass it to the work the lock protects.
    /// Not cancelled by <see cref="DisposeAsync"/>.
    /// </summary>
    public CancellationToken LockLost => _lost.Token;

    /// <summary>
    /// True when the lock is transaction-scoped, held by a transaction this handle keeps open (the mode that works behind
    /// PgBouncer transaction pooling); false for a session-level lock.
    /// </summary>
    public bool HeldByTransaction => _transaction is not null;

    /// <summary>True once the lock is known to be lost.</summary>
    public bool IsLost => _lost.IsCancellationRequested;

    /// <summary>
    /// Unlocks (<c>pg_advisory_unlock</c>) and returns the connection to the pool. If the unlock cannot be done because the
    /// connection broke, the server has already dropped the lock with the session; if it fails otherwise, the connection is
    /// closed instead of pooled, so the lock cannot outlive the handle. Safe to call more than once and concurrently.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            await _released.Task.ConfigureAwait(false);
            return;
        }

        try
        {
            await _stopMonitor.CancelAsync().ConfigureAwait(false);
            await _monitor.ConfigureAwait(false);
            if (!IsLost)
            {
                await UnlockAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            if (_transaction is not null)
            {
                await _transaction.DisposeAsync().ConfigureAwait(false);
            }

            await _connection.DisposeAsync().ConfigureAwait(false);
            _stopMonitor.Dispose();
            _released.TrySetResult();
        }
    }

    private async Task UnlockAsync()
    {
        var failure = await LockConnection.ReleaseOrDiscardAsync(_connection, async () =>
        {
            if (_transaction is not null)
            {
                // A transaction-scoped lock ends with its transaction.
                await _transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
                Log.AdvisoryReleased(_logger, Key, Mode);
                return;
            }

            var command = AdvisorySql.Command(AdvisorySql.Unlock(Mode), Key, _connection, transaction: null);
            await using (command.ConfigureAwait(false))
            {
                if ((bool)(await command.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false))!)
                {
                    Log.AdvisoryReleased(_logger, Key, Mode);
                }
                else
                {
                    Log.AdvisoryNotHeldAtRelease(_logger, Key);
                }
            }
        }).ConfigureAwait(false);

        if (failure is not null)
        {
            // Whatever state the session was in, it was not returned to the pool while it may hold the lock.
            Log.AdvisoryReleaseFailed(_logger, Key, failure);
        }
    }

    /// <summary>
    /// Waits on the idle connection for anything the server sends. A terminated backend sends a FATAL error and closes
    /// the socket, which ends the wait with an exception: that is the moment the lock is gone.
    /// </summary>
    private async Task MonitorAsync()
    {
        await Task.Yield();
        try
        {
            while (!_stopMonitor.IsCancellationRequested)
            {
                // The timeout bounds how long DisposeAsync can wait for this loop should a cancellation race past the
                // wait's registration; normally the cancellation ends the wait at once.
                await _connection.WaitAsync(MonitorSlice, _stopMonitor.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stopMonitor.IsCancellationRequested)
        {
            // Disposing: stop watching.
        }
        catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException or OperationCanceledException)
        {
            Log.AdvisoryLost(_logger, Key, e);
            await _lost.CancelAsync().ConfigureAwait(false);
        }
    }
}
