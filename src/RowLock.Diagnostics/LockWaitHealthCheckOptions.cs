namespace RowLock;

/// <summary>When <see cref="LockWaitHealthCheck"/> reports Degraded.</summary>
public sealed class LockWaitHealthCheckOptions
{
    /// <summary>A session waiting on a lock longer than this makes the check Degraded. Default 30 seconds; must be positive.</summary>
    public TimeSpan Threshold { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Names for advisory keys, so the report says <c>"jobs.sync"</c> instead of a number.</summary>
    public AdvisoryKeyNames? AdvisoryKeyNames { get; set; }
}
