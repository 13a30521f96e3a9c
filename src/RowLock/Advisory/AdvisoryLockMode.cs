namespace RowLock;

/// <summary>Whether an advisory lock excludes everyone or only exclusive holders.</summary>
public enum AdvisoryLockMode
{
    /// <summary>One holder at a time (<c>pg_advisory_lock</c>).</summary>
    Exclusive = 0,

    /// <summary>Any number of shared holders at once; excludes exclusive holders (<c>pg_advisory_lock_shared</c>).</summary>
    Shared,
}
