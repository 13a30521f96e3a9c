using RowLock.Hosting.Internal;

namespace RowLock.Hosting;

/// <summary>
/// This instance leads an election, with a fencing <see cref="Epoch"/> the database gave it, until <see cref="Lost"/> is
/// cancelled or the leadership is disposed (which resigns: the lock or lease is released at once and the next candidate
/// takes over without waiting for a timeout).
/// </summary>
/// <remarks>
/// <para><see cref="Lost"/> is a hint that comes as fast as the client can tell; the <see cref="Epoch"/> is the guarantee.
/// Fence every write the leadership protects with <see cref="LeaderFenceTransactionExtensions.FenceAsync"/>: the database
/// then refuses the transaction once a newer epoch exists, even when this instance has not noticed its loss yet.</para>
/// <para>Disposing is safe more than once and concurrently; it never throws for a connection that is already gone.</para>
/// </remarks>
public sealed class Leadership : IAsyncDisposable
{
    private readonly LeaderTenure? _tenure;

    internal Leadership(LeaderTenure tenure)
    {
        _tenure = tenure;
        Name = tenure.Name;
        Epoch = tenure.Epoch;
        Mode = tenure.Mode;
        Lost = tenure.LostToken;
        FencedTransactionIdleTimeout = tenure.FencedTransactionIdleTimeout;
    }

    /// <summary>A leadership that only carries a name and an epoch (tests: a stale leader that never noticed its loss).</summary>
    internal Leadership(string name, long epoch, TimeSpan? fencedTransactionIdleTimeout)
    {
        Name = name;
        Epoch = epoch;
        Mode = LeaderElectionMode.Session;
        Lost = CancellationToken.None;
        FencedTransactionIdleTimeout = fencedTransactionIdleTimeout;
    }

    /// <summary>The election's name.</summary>
    public string Name { get; }

    /// <summary>
    /// The fencing token: incremented in the database by every new leader of this name, so a larger epoch is always a later
    /// leader. Pass the leadership to <see cref="LeaderFenceTransactionExtensions.FenceAsync"/>, or store the epoch with what you write.
    /// </summary>
    public long Epoch { get; }

    /// <summary>How the leadership is held.</summary>
    public LeaderElectionMode Mode { get; }

    /// <summary>
    /// Cancelled when the leadership ends: lost (backend terminated, connection broken, keepalive or lease renewal without
    /// an answer, failover) or resigned (<see cref="DisposeAsync"/>, host stopping). Pass it to the work the leadership guards.
    /// </summary>
    public CancellationToken Lost { get; }

    /// <summary>True once <see cref="Lost"/> is cancelled.</summary>
    public bool IsLost => Lost.IsCancellationRequested;

    /// <summary>Why the leadership ended (a sentence for logs), or null while it lasts.</summary>
    public string? EndReason => _tenure?.EndReason;

    internal TimeSpan? FencedTransactionIdleTimeout { get; }

    /// <summary>
    /// Resigns: cancels <see cref="Lost"/>, then releases the lock (session mode: <c>pg_advisory_unlock</c>, which hands it to
    /// a waiting follower at once) or ends the lease, and sends <c>NOTIFY rowlock_leader</c> with the name. When the
    /// leadership was already lost, only cleans up.
    /// </summary>
    public ValueTask DisposeAsync() => _tenure is null ? ValueTask.CompletedTask : new ValueTask(_tenure.ResignAsync());
}
