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

    /// <summary>The server process id (<c>pg_stat_activity.pid</c>): what <c>pg_cancel_backend</c> and <c>pg_terminate_backend</c> take.</summary>
    public int Pid { get; }

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

    /// <summary>The sessions that wait directly behind this one, ascending.</summary>
    public IReadOnlyList<int> Blocking { get; internal set; } = [];

    /// <summary>
    /// The blockers from this session up to the root: the first item is the session it waits behind, the last the root
    /// blocker. Where a session waits behind several, the chain follows the lowest pid. Empty when it waits for nothing.
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

    /// <summary>True when the session sits in an open transaction doing nothing (<c>idle in transaction</c>) while others wait on it: usually the application's bug.</summary>
    public bool IsIdleInTransaction => State is not null && State.StartsWith("idle in transaction", StringComparison.Ordinal);
}
