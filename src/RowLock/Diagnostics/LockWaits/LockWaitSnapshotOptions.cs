namespace RowLock;

/// <summary>What <see cref="LockDiagnostics.GetLockWaitSnapshotAsync(Npgsql.NpgsqlDataSource, LockWaitSnapshotOptions?, CancellationToken)"/> collects.</summary>
public sealed class LockWaitSnapshotOptions
{
    /// <summary>Names for advisory keys (see <see cref="AdvisoryKeyNames"/>); null shows keys as numbers.</summary>
    public AdvisoryKeyNames? AdvisoryKeyNames { get; set; }

    /// <summary>Query text is cut to this many characters (on the server, so long statements are not transferred). Default 500; at least 1.</summary>
    public int MaxQueryLength { get; set; } = 500;

    /// <summary>How many of the longest-running transactions to include. Default 5; 0 for none.</summary>
    public int LongestTransactionCount { get; set; } = 5;

    /// <summary>
    /// Include sessions of every database on the server, not only the data source's. Default false: lock waits never
    /// cross databases (except on shared catalogs), and table names resolve only in the connected database.
    /// </summary>
    public bool AllDatabases { get; set; }
}
