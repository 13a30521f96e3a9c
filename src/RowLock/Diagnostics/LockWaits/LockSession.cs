namespace RowLock;

/// <summary>
/// One server session in a <see cref="LockWaitSnapshot"/>: a session that waits on a lock, holds a lock others wait
/// on, or runs one of the longest transactions.
/// </summary>
/// <remarks>
/// Without superuser or <c>pg_read_all_stats</c>, PostgreSQL hides the details of other roles' sessions:
/// <see cref="IsDetailHidden"/> is true and <see cref="Query"/>, <see cref="State"/>, <see cref="Client"/> and
/// <see cref="TransactionAge"/> are null. The lock facts (what it waits for, who blocks it, since when) come from
/// <c>pg_locks</c> and are always visible.
/// </remarks>
public sealed class LockSession
{
    internal LockSession(int pid)
    {
        Pid = pid;
    }

    /// <summary>
    /// The server process id (<c>pg_stat_activity.pid</c>): what <c>pg_cancel_backend</c> and <c>pg_terminate_backend</c> take.
    /// A prepared transaction (<see cref="IsPreparedTransaction"/>) has no process: its pid is a negative number, unique
    /// within the snapshot, that only links it to the sessions it blocks.
    /// </summary>
    public int Pid { get; }

    /// <summary>The database the session is connected to (for a prepared transaction, the database it ran in); null when unknown.</summary>
    public string? Database { get; internal set; }

    /// <summary>
    /// True when the session is connected to a database other than the snapshot's: a blocker holding a lock on a shared
    /// catalog (e.g. <c>pg_database</c>), or any session of another database with <see cref="LockWaitSnapshotOptions.AllDatabases"/>.
    /// </summary>
    public bool IsInOtherDatabase { get; internal set; }

    /// <summary>
    /// True when this is not a session but a prepared (two-phase) transaction: it holds its locks until someone runs
    /// <c>COMMIT PREPARED</c> or <c>ROLLBACK PREPARED</c> with its <see cref="PreparedTransactionId"/>; no process can be
    /// cancelled or terminated to free them. <see cref="TransactionAge"/> is the time since PREPARE TRANSACTION.
    /// </summary>
    public bool IsPreparedTransaction { get; internal set; }

    /// <summary>The prepared transaction's global id (<c>pg_prepared_xacts.gid</c>), or null for a session (or a prepared transaction that ended while the snapshot was read).</summary>
    public string? PreparedTransactionId { get; internal set; }

    /// <summary><c>pg_stat_activity.backend_type</c>: <c>client backend</c>, <c>autovacuum worker</c>, <c>parallel worker</c>...; null when unknown.</summary>
    public string? BackendType { get; internal set; }

    /// <summary>For a parallel worker, the pid of the session that leads its query (the one to look at, or to end); otherwise null.</summary>
    public int? ParallelLeaderPid { get; internal set; }

    /// <summary>How many parallel workers run this session's current query now (0 when none).</summary>
    public int ParallelWorkers { get; internal set; }

    /// <summary>How long the session has been in its <see cref="State"/>: for <c>idle in transaction</c>, how long it has done nothing; null when hidden.</summary>
    public TimeSpan? StateDuration { get; internal set; }

    /// <summary>
    /// False when pg_blocking_pids named this session but it was not in <c>pg_stat_activity</c> when the snapshot read it
    /// (it ended in between): only its pid is known.
    /// </summary>
    public bool IsKnown { get; internal set; } = true;

    /// <summary>The role the session logged in as.</summary>
    public string? UserName { get; internal set; }

    /// <summary>The <c>Application Name</c> the client set (empty when it set none).</summary>
    public string? ApplicationName { get; internal set; }

    /// <summary>Client address and port, e.g. <c>10.0.0.7:51234</c>; <c>local</c> for a Unix socket; null when hidden.</summary>
    public string? Client { get; internal set; }

    /// <summary><c>pg_stat_activity.state</c>: <c>active</c>, <c>idle</c>, <c>idle in transaction</c>...; null when hidden.</summary>
    public string? State { get; internal set; }

    /// <summary>True when PostgreSQL hid this session's details from the snapshot's role (see the remarks).</summary>
    public bool IsDetailHidden { get; internal set; }

    /// <summary>The current (or, when idle, last) statement, whitespace as sent, cut to <see cref="LockWaitSnapshotOptions.MaxQueryLength"/>; null when hidden.</summary>
    public string? Query { get; internal set; }

    /// <summary>How long the open transaction has run, or null when none is open (or hidden).</summary>
    public TimeSpan? TransactionAge { get; internal set; }

    /// <summary>The lock the session waits for, or null when it waits for none.</summary>
    public LockWaitTarget? WaitingFor { get; internal set; }

    /// <summary>How long the session has waited for <see cref="WaitingFor"/> (from <c>pg_locks.waitstart</c>, PostgreSQL 14 or later).</summary>
    public TimeSpan? WaitDuration { get; internal set; }

    /// <summary>The sessions this one waits behind (<c>pg_blocking_pids</c>), ascending. Empty when it waits for nothing.</summary>
    public IReadOnlyList<int> BlockedBy { get; internal set; } = [];

    /// <summary>
    /// The sessions of <see cref="BlockedBy"/> that hold the lock this one wants, ascending. The others are only ahead of
    /// it in the same lock's queue (pg_blocking_pids names every conflicting waiter ahead); when none holds it, the session
    /// waits in the queue behind the sessions waiting ahead of it. Prepared transactions appear with their negative pid.
    /// </summary>
    public IReadOnlyList<int> Holders { get; internal set; } = [];

    /// <summary>The sessions that wait directly behind this one (it is in their <see cref="BlockedBy"/>), ascending.</summary>
    public IReadOnlyList<int> Blocking { get; internal set; } = [];

    /// <summary>
    /// The blockers from this session up to the root: the first item is the session holding the lock it waits for (for a
    /// session queued behind other waiters, the holder that queue waits on), the last the root blocker. Where several hold
    /// it, the chain follows the lowest pid. Empty when it waits for nothing.
    /// </summary>
    public IReadOnlyList<int> BlockerChain { get; internal set; } = [];

    /// <summary>The root blocker this session ultimately waits on (the last item of <see cref="BlockerChain"/>), or null.</summary>
    public int? RootBlocker => BlockerChain.Count == 0 ? null : BlockerChain[^1];

    /// <summary>How many distinct sessions wait on this one, directly or down a chain.</summary>
    public int HoldsUp { get; internal set; }

    /// <summary>True when the session waits for a lock.</summary>
    public bool IsWaiting => BlockedBy.Count > 0;

    /// <summary>True when others wait on this session and it waits for nothing (or, in a deadlock cycle not yet broken, it is the cycle's lowest pid).</summary>
    public bool IsRoot { get; internal set; }

    /// <summary>
    /// True when the session waits in a cycle: a deadlock the server has not detected yet (it checks after
    /// <c>deadlock_timeout</c>, default 1 s, and then cancels one of them).
    /// </summary>
    public bool IsInDeadlockCycle { get; internal set; }

    /// <summary>True when the session sits in an open transaction doing nothing (<c>idle in transaction</c>) while others wait on it: usually the application's bug.</summary>
    public bool IsIdleInTransaction => State is not null && State.StartsWith("idle in transaction", StringComparison.Ordinal);
}
