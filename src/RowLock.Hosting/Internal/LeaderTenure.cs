using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace RowLock.Hosting.Internal;

/// <summary>One leadership from acquisition to its end, lost or resigned; the mode-specific parts are the subclasses'.</summary>
internal abstract class LeaderTenure
{
    private const int Leading = 0;
    private const int LostState = 1;
    private const int Resigning = 2;

    private readonly CancellationTokenSource _lost = new();
    private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _state;
    private int _disposed;
    private long _lastConfirmed = Stopwatch.GetTimestamp();

    protected LeaderTenure(string name, long epoch, LeaderElectionMode mode, ILogger logger, TimeSpan? fencedTransactionIdleTimeout)
    {
        Name = name;
        Epoch = epoch;
        Mode = mode;
        Logger = logger;
        FencedTransactionIdleTimeout = fencedTransactionIdleTimeout;
        LostToken = _lost.Token;
    }

    public string Name { get; }

    public long Epoch { get; }

    public LeaderElectionMode Mode { get; }

    public CancellationToken LostToken { get; }

    public TimeSpan? FencedTransactionIdleTimeout { get; }

    public string? EndReason { get; private set; }

    public bool IsOver => Volatile.Read(ref _state) != Leading;

    protected ILogger Logger { get; }

    /// <summary>Called by whoever watches the session or lease when it answered: the loss-detection time counts from here.</summary>
    protected void Confirmed() => Volatile.Write(ref _lastConfirmed, Stopwatch.GetTimestamp());

    /// <summary>The leadership is gone: cancel <see cref="LostToken"/> (once), log and count it.</summary>
    protected void DeclareLost(string reason, Exception? exception)
    {
        if (Interlocked.CompareExchange(ref _state, LostState, Leading) != Leading)
        {
            return;
        }

        EndReason = reason;
        try
        {
            _lost.Cancel();
        }
        catch (AggregateException e)
        {
            // A callback the user registered threw; the loss stands.
            Logger.LogWarning(e, "A callback on Leadership.Lost of {LeaderName} threw", Name);
        }

        LeaderTelemetry.Lost(Name, Volatile.Read(ref _lastConfirmed));
        LeaderLog.Lost(Logger, Name, Epoch, reason, exception);
    }

    /// <summary>Resigns exactly once; concurrent and later callers wait for that.</summary>
    public async Task ResignAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            await _released.Task.ConfigureAwait(false);
            return;
        }

        try
        {
            var resigning = Interlocked.CompareExchange(ref _state, Resigning, Leading) == Leading;
            if (resigning)
            {
                EndReason = "resigned";
                try
                {
                    await _lost.CancelAsync().ConfigureAwait(false);
                }
                catch (AggregateException e)
                {
                    Logger.LogWarning(e, "A callback on Leadership.Lost of {LeaderName} threw", Name);
                }
            }

            if (resigning)
            {
                // Counted and logged before the release: the next leader's "acquired" always comes after this "resigned".
                LeaderTelemetry.Resigned(Name);
                LeaderLog.Resigned(Logger, Name, Epoch);
            }

            await StopAsync(resigning).ConfigureAwait(false);
        }
        finally
        {
            _released.TrySetResult();
        }
    }

    /// <summary>Stops watching, then releases the lock or lease (<paramref name="resign"/>) or just cleans up after a loss.</summary>
    protected abstract Task StopAsync(bool resign);
}
