namespace RowLock;

/// <summary>
/// Who blocks whom, now: the lock-wait graph of a PostgreSQL database at one instant, read in one query from
/// <c>pg_locks</c>, <c>pg_stat_activity</c>, <c>pg_blocking_pids</c>, <c>pg_class</c> and <c>pg_stat_database</c>.
/// </summary>
/// <remarks>
/// The views are sampled one after the other by the server, not atomically: a wait that starts or ends during the
/// query may show half. Take another snapshot when something looks inconsistent.
/// </remarks>
public sealed class LockWaitSnapshot
{
    private readonly Dictionary<int, LockSession> _byPid;

    internal LockWaitSnapshot(
        DateTimeOffset takenAt,
        string database,
        long? deadlocks,
        IReadOnlyList<LockSession> sessions,
        IReadOnlyList<LockSession> roots,
        IReadOnlyList<LockSession> longestTransactions)
    {
        TakenAt = takenAt;
        Database = database;
        Deadlocks = deadlocks;
        Sessions = sessions;
        Roots = roots;
        LongestTransactions = longestTransactions;
        _byPid = sessions.ToDictionary(s => s.Pid);
        Waiting = sessions.Where(s => s.IsWaiting).ToArray();
        IdleInTransactionBlockers = sessions.Where(s => s.Blocking.Count > 0 && s.IsIdleInTransaction).OrderByDescending(s => s.HoldsUp).ThenBy(s => s.Pid).ToArray();
    }

    /// <summary>The server's clock when the snapshot was taken (<c>statement_timestamp()</c>).</summary>
    public DateTimeOffset TakenAt { get; }

    /// <summary>The database the snapshot was taken in.</summary>
    public string Database { get; }

    /// <summary><c>pg_stat_database.deadlocks</c> of <see cref="Database"/>: deadlocks detected since statistics were last reset (null when not readable).</summary>
    public long? Deadlocks { get; }

    /// <summary>Every session in the snapshot (waiting, blocking, or among the longest transactions), ascending by pid.</summary>
    public IReadOnlyList<LockSession> Sessions { get; }

    /// <summary>The sessions waiting for a lock, ascending by pid.</summary>
    public IReadOnlyList<LockSession> Waiting { get; }

    /// <summary>
    /// The root blockers: sessions others wait on that wait for nothing themselves, most harmful first (by
    /// <see cref="LockSession.HoldsUp"/>, then the oldest transaction, then pid). Ending the first one's transaction
    /// frees the most sessions.
    /// </summary>
    public IReadOnlyList<LockSession> Roots { get; }

    /// <summary>The longest-running open transactions, oldest first (up to <see cref="LockWaitSnapshotOptions.LongestTransactionCount"/>).</summary>
    public IReadOnlyList<LockSession> LongestTransactions { get; }

    /// <summary>Sessions idle in an open transaction while others wait on them, most harmful first.</summary>
    public IReadOnlyList<LockSession> IdleInTransactionBlockers { get; }

    /// <summary>The session with process id <paramref name="pid"/>, or null when it is not in the snapshot.</summary>
    public LockSession? Session(int pid) => _byPid.GetValueOrDefault(pid);
}
