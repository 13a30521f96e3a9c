using Npgsql;

namespace RowLock.Internal;

internal static class ReadOnly
{
    /// <summary>25006 from a lock: the connection went to a standby or a read-only session, where locks cannot coordinate writers.</summary>
    public static InvalidOperationException Exception(PostgresException error) => new(
        "Row locks need a writable primary, but this transaction is read-only (a standby, or default_transaction_read_only is on). " +
        "Point the data source at the primary: with several hosts, use Target Session Attributes=primary " +
        "(NpgsqlMultiHostDataSource.WithTargetSession(TargetSessionAttributes.Primary)).", error);
}
