namespace RowLock.Hosting;

/// <summary>
/// Settings of a <see cref="LeaderElection"/>. Bind them from configuration with
/// <c>services.AddRowLockLeaderService&lt;TWorker&gt;(name, configuration.GetSection("RowLock:Leaders:name"))</c>; every
/// property but <see cref="CanLead"/> binds. Checked when the election is built (<see cref="Validate"/>).
/// </summary>
public sealed class LeaderElectionOptions
{
    /// <summary>Session advisory lock (default) or lease.</summary>
    /// <value>Default: <see cref="LeaderElectionMode.Session"/>.</value>
    public LeaderElectionMode Mode { get; set; } = LeaderElectionMode.Session;

    /// <summary>
    /// Session mode: how long the leader's connection may sit silent before the leader probes it (a query that also checks
    /// the lock is still held by that session). A terminated backend or a closed socket is noticed at once, whatever this is.
    /// </summary>
    /// <value>Default: 2 seconds.</value>
    public TimeSpan KeepaliveInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Session mode: a probe with no answer after this long means the leadership is lost (a silent partition).</summary>
    /// <value>Default: 3 seconds.</value>
    public TimeSpan KeepaliveTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// Session mode: the leader's session sets <c>idle_session_timeout</c> to this, so the server itself ends a leader's
    /// session that has been silent this long (a partitioned leader whose socket still looks alive to the server) and the
    /// lock goes to a follower. Must be longer than <see cref="KeepaliveInterval"/> + <see cref="KeepaliveTimeout"/>, so a
    /// partitioned leader's <see cref="Leadership.Lost"/> normally fires before the server lets another instance lead.
    /// Null leaves the server's setting (then only TCP keepalives end a partitioned session, after hours by default).
    /// </summary>
    /// <value>Default: 15 seconds.</value>
    public TimeSpan? SessionTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Session mode: a follower waits on the lock (a blocking <c>pg_advisory_lock</c>) in slices this long, then starts
    /// a new wait; between slices it re-checks <see cref="CanLead"/> and notices a dead connection.
    /// </summary>
    /// <value>Default: 30 seconds.</value>
    public TimeSpan FollowerWaitSlice { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Session mode: allow a session lock although the connection goes through a pooler (detected because the backend
    /// process id the server reports differs from the one the connection was given at startup, as with PgBouncer). Set
    /// it only when the pooler keeps one server session per client session (PgBouncer <c>pool_mode = session</c>).
    /// </summary>
    /// <value>Default: false.</value>
    public bool AllowSessionModeBehindPooler { get; set; }

    /// <summary>Lease mode: how long a lease lasts after each renewal.</summary>
    /// <value>Default: 15 seconds.</value>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Lease mode: how often the leader renews its lease. Must be at most a third of <see cref="LeaseDuration"/>.</summary>
    /// <value>Default: 5 seconds.</value>
    public TimeSpan LeaseRenewInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Lease mode: how often a follower checks whether the lease expired or was released (with jitter).</summary>
    /// <value>Default: 2 seconds.</value>
    public TimeSpan LeasePollInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// What <see cref="LeaderFenceTransactionExtensions.FenceAsync"/> sets as <c>idle_in_transaction_session_timeout</c>
    /// for the rest of the fenced transaction: a fenced transaction holds back the next leader's epoch increment, so one
    /// stuck idle (its client partitioned) is ended by the server after this long. Null leaves the setting alone.
    /// </summary>
    /// <value>Default: 30 seconds.</value>
    public TimeSpan? FencedTransactionIdleTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>After a failed attempt (no connection, server down), how long to wait before the next (with jitter).</summary>
    /// <value>Default: 1 second.</value>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Create the epochs table on first use (<c>CREATE TABLE IF NOT EXISTS rowlock_leader_epochs</c>). Turn off when the script in the docs was run.</summary>
    /// <value>Default: true.</value>
    public bool CreateTable { get; set; } = true;

    /// <summary>Who this instance is, written to the epochs table's <c>holder</c> column; null: machine name, process id and a random suffix.</summary>
    public string? InstanceName { get; set; }

    /// <summary>
    /// Keeps this instance out of the election while it returns false (checked before every attempt and between a
    /// follower's wait slices); null: always a candidate. Cannot be bound from configuration.
    /// </summary>
    public Func<bool>? CanLead { get; set; }

    /// <summary>Checks every setting and throws <see cref="ArgumentException"/> naming the first that is out of range.</summary>
    /// <exception cref="ArgumentException">A setting is out of range; the message names it.</exception>
    public void Validate()
    {
        Positive(KeepaliveInterval, nameof(KeepaliveInterval));
        Positive(KeepaliveTimeout, nameof(KeepaliveTimeout));
        Positive(FollowerWaitSlice, nameof(FollowerWaitSlice));
        Positive(LeaseDuration, nameof(LeaseDuration));
        Positive(LeaseRenewInterval, nameof(LeaseRenewInterval));
        Positive(LeasePollInterval, nameof(LeasePollInterval));
        if (RetryDelay < TimeSpan.Zero)
        {
            throw new ArgumentException($"{nameof(RetryDelay)} must not be negative (it is {RetryDelay}).", nameof(RetryDelay));
        }

        if (SessionTimeout is { } session && session <= KeepaliveInterval + KeepaliveTimeout)
        {
            throw new ArgumentException(
                $"{nameof(SessionTimeout)} ({session}) must be longer than {nameof(KeepaliveInterval)} + {nameof(KeepaliveTimeout)} ({KeepaliveInterval + KeepaliveTimeout}): "
                + "the server must not end a leader's session before the leader can notice it is partitioned.", nameof(SessionTimeout));
        }

        if (FencedTransactionIdleTimeout is { } idle)
        {
            Positive(idle, nameof(FencedTransactionIdleTimeout));
        }

        if (LeaseRenewInterval * 3 > LeaseDuration)
        {
            throw new ArgumentException(
                $"{nameof(LeaseRenewInterval)} ({LeaseRenewInterval}) must be at most a third of {nameof(LeaseDuration)} ({LeaseDuration}), so a lease survives a missed renewal.",
                nameof(LeaseRenewInterval));
        }

        if (InstanceName is { Length: 0 })
        {
            throw new ArgumentException($"{nameof(InstanceName)} must be null or non-empty.", nameof(InstanceName));
        }
    }

    private static void Positive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero || value.TotalMilliseconds > int.MaxValue)
        {
            throw new ArgumentException($"{name} must be positive and at most 24.8 days (it is {value}).", name);
        }
    }
}
