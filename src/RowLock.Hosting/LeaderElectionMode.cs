namespace RowLock.Hosting;

/// <summary>How a <see cref="LeaderElection"/> holds leadership.</summary>
public enum LeaderElectionMode
{
    /// <summary>
    /// A session advisory lock on a dedicated connection (the default): followers wait on the lock, a leader loses it the
    /// moment its session ends. Needs a real session: refused through a pooler unless
    /// <see cref="LeaderElectionOptions.AllowSessionModeBehindPooler"/> says the pooler keeps sessions.
    /// </summary>
    Session,

    /// <summary>
    /// A lease in the epochs table, renewed by autocommit statements: works through PgBouncer transaction pooling. A
    /// leader that stops renewing loses the lease when it expires (<see cref="LeaderElectionOptions.LeaseDuration"/>).
    /// </summary>
    Lease,
}
