using System.Globalization;

namespace RowLock;

/// <summary>The lock a session waits for: its ungranted <c>pg_locks</c> row, interpreted.</summary>
public sealed class LockWaitTarget
{
    internal LockWaitTarget(
        LockWaitTargetKind kind,
        string lockType,
        string mode,
        string? relation,
        int? page,
        short? tuple,
        string? transactionId,
        AdvisoryLockKey? advisoryKey,
        string? advisoryName,
        uint? relationId = null,
        string? database = null,
        bool isInOtherDatabase = false,
        string identity = "")
    {
        RelationId = relationId;
        Database = database;
        IsInOtherDatabase = isInOtherDatabase;
        Identity = identity;
        Kind = kind;
        LockType = lockType;
        Mode = mode;
        Relation = relation;
        Page = page;
        Tuple = tuple;
        TransactionId = transactionId;
        AdvisoryKey = advisoryKey;
        AdvisoryName = advisoryName;
    }

    /// <summary>What kind of thing is waited for.</summary>
    public LockWaitTargetKind Kind { get; }

    /// <summary><c>pg_locks.locktype</c> of the ungranted lock: <c>transactionid</c>, <c>tuple</c>, <c>advisory</c>, <c>relation</c>...</summary>
    public string LockType { get; }

    /// <summary><c>pg_locks.mode</c> of the ungranted lock, e.g. <c>ShareLock</c> or <c>ExclusiveLock</c>.</summary>
    public string Mode { get; }

    /// <summary>The table, always schema-qualified and quoted where needed (<c>public.accounts</c>), or null when unknown or in another database (see <see cref="RelationId"/>).</summary>
    public string? Relation { get; internal set; }

    /// <summary>The table's oid (<c>pg_locks.relation</c>), also when its name cannot be read (a table of another database); null when no table is involved.</summary>
    public uint? RelationId { get; }

    /// <summary>The database the lock belongs to (<c>pg_locks.database</c>), or null for a lock on no database (a transaction id) or a shared catalog.</summary>
    public string? Database { get; }

    /// <summary>True when the lock belongs to a database other than the snapshot's (only with <see cref="LockWaitSnapshotOptions.AllDatabases"/>).</summary>
    public bool IsInOtherDatabase { get; }

    /// <summary>What identifies the locked object, for grouping the waiters of one lock into a queue: one row is one object however it is waited for.</summary>
    internal string Identity { get; }

    /// <summary>The row's block number (first half of its ctid), for <see cref="LockWaitTargetKind.Row"/>.</summary>
    public int? Page { get; }

    /// <summary>The row's item number within its block (second half of its ctid), for <see cref="LockWaitTargetKind.Row"/>.</summary>
    public short? Tuple { get; }

    /// <summary>
    /// The row's physical address, e.g. <c>(0,1)</c>: <c>SELECT * FROM relation WHERE ctid = '(0,1)'</c> shows it
    /// (until the row is updated or the table vacuumed).
    /// </summary>
    public string? Ctid => Page is { } page && Tuple is { } tuple ? string.Create(CultureInfo.InvariantCulture, $"({page},{tuple})") : null;

    /// <summary>The transaction id waited on (<c>pg_locks.transactionid</c>), for a row or transaction-id wait.</summary>
    public string? TransactionId { get; }

    /// <summary>The advisory key, for <see cref="LockWaitTargetKind.Advisory"/>.</summary>
    public AdvisoryLockKey? AdvisoryKey { get; }

    /// <summary>The key's name from the <see cref="AdvisoryKeyNames"/> given to the snapshot, or null when it is not registered.</summary>
    public string? AdvisoryName { get; }

    /// <summary>
    /// One line for a person: <c>row (0,1) of accounts via transaction 745 [ShareLock]</c>, <c>transaction 746 [ShareLock]</c>,
    /// <c>advisory lock "jobs.sync" (key 4711...) [ExclusiveLock]</c>, <c>table accounts [AccessExclusiveLock]</c>.
    /// </summary>
    public override string ToString()
    {
        var what = Kind switch
        {
            LockWaitTargetKind.Row => Describe() + (TransactionId is null ? "" : " via transaction " + TransactionId),
            _ => Describe(),
        };
        return what + " [" + Mode + "]";
    }

    /// <summary>The object alone, without the mode or the transaction id it is reached through: <c>row (0,1) of public.accounts</c>; what a queue of waiters waits for.</summary>
    public string Describe()
    {
        var what = Kind switch
        {
            LockWaitTargetKind.Row => "row " + (Ctid ?? "?") + " of " + Table(),
            LockWaitTargetKind.TransactionId => "transaction " + TransactionId,
            LockWaitTargetKind.Advisory => "advisory lock " + DescribeAdvisory(),
            LockWaitTargetKind.Relation => "table " + Table(),
            _ => LockType + (RelationId is null ? "" : " on " + Table()),
        };
        return what + Where();
    }

    private string Table() =>
        Relation ?? (RelationId is { } oid ? string.Create(CultureInfo.InvariantCulture, $"relation {oid}") : "?");

    private string Where() => IsInOtherDatabase && Database is not null ? " in database " + Database : "";

    private string DescribeAdvisory()
    {
        if (AdvisoryKey is not { } key)
        {
            return "?";
        }

        var number = key.IsInt32Pair
            ? string.Create(CultureInfo.InvariantCulture, $"({key.Key1}, {key.Key2})")
            : key.Value.ToString(CultureInfo.InvariantCulture);
        return AdvisoryName is null ? number : "\"" + AdvisoryName + "\" (key " + number + ")";
    }
}
