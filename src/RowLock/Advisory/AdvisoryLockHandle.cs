using RowLock.Internal;

namespace RowLock;

/// <summary>
/// An advisory lock held on a connection this handle owns: a session-level lock, or a transaction-scoped one inside a
/// transaction the handle keeps open (<see cref="HeldByTransaction"/>). The lock is held until <see cref="DisposeAsync"/>
/// releases it or the connection dies. A pooled connection keeps a session lock while it sits idle in the pool, so the
/// handle unlocks explicitly before it gives the connection back.
/// </summary>
/// <remarks>
/// <para>Release happens exactly once, even when <see cref="DisposeAsync"/> is called concurrently.</para>
/// <para>
/// Dispose your handles. A handle that is garbage-collected without being disposed releases its lock then (from its
/// finalizer, on the thread pool) and logs a warning, but only when the collector gets to it. A <see cref="LockLost"/>
/// callback that captures the handle keeps it reachable, and then only disposing releases it.
/// </para>
/// <para>Session locks need a real session: they do not work behind PgBouncer in transaction pooling mode.</para>
/// </remarks>
public sealed class AdvisoryLockHandle : IAsyncDisposable
{
    private readonly HeldAdvisoryLock _held;

    internal AdvisoryLockHandle(HeldAdvisoryLock held) => _held = held;

    /// <summary>Releases the lock of a handle nobody disposed.</summary>
    ~AdvisoryLockHandle() => _held.ReleaseAbandoned();

    /// <summary>
    /// The lock's key: for a semaphore handle, the slot it holds (<c>(classId, slot)</c>); for a handle from
    /// <c>AcquireAdvisoryLocksAsync</c>, the first of <see cref="Keys"/>.
    /// </summary>
    public AdvisoryLockKey Key => _held.Key;

    /// <summary>Every lock this handle holds, in the order they were taken (ascending key order for several; else just <see cref="Key"/>).</summary>
    public IReadOnlyList<AdvisoryLockKey> Keys => _held.Keys;

    /// <summary>Exclusive or shared.</summary>
    public AdvisoryLockMode Mode => _held.Mode;

    /// <summary>
    /// Cancelled when the handle's connection dies (the backend was terminated, the server restarted, the network broke):
    /// the server has then released the lock and someone else may hold it. Pass it to the work the lock protects.
    /// Not cancelled by <see cref="DisposeAsync"/>. The handle starts watching its connection the first time this
    /// property (or <see cref="IsLost"/>) is read; a handle nobody asks costs nothing while it is held.
    /// </summary>
    public CancellationToken LockLost => _held.Watch();

    /// <summary>
    /// True when the lock is transaction-scoped, held by a transaction this handle keeps open (the mode that works behind
    /// PgBouncer transaction pooling); false for a session-level lock.
    /// </summary>
    public bool HeldByTransaction => _held.HeldByTransaction;

    /// <summary>True once the lock is known to be lost (reading it starts the watch, as <see cref="LockLost"/> does).</summary>
    public bool IsLost => _held.Watch().IsCancellationRequested;

    /// <summary>
    /// Releases the lock (<c>pg_advisory_unlock</c>, or a rollback for a transaction-held lock) and returns the connection
    /// to the pool. If the connection broke, the server has already dropped the lock with the session. If the release
    /// fails otherwise, the connection's session is ended (or, failing that, the data source's pool is cleared) so the
    /// connection is closed instead of pooled and the lock cannot outlive the handle. Safe to call more than once and concurrently.
    /// </summary>
    public ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return new ValueTask(_held.ReleaseAsync());
    }
}
