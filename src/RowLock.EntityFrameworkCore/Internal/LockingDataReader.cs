using System.Collections;
using System.Data.Common;
using Npgsql;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>
/// The reader EF gets for a locking query RowLock runs itself: NOWAIT and timed locks (in RowLock's savepoint), and any
/// locking query on a context that already tracks entities. PostgreSQL locks rows as it returns them, so a row held by
/// someone else can fail the query at any Read, after earlier rows were returned, or while the rest of the result is
/// drained when the caller leaves the loop early (Close / Dispose); wherever that happens, this reader rolls back to
/// RowLock's savepoint, detaches what the query started tracking and throws <see cref="LockNotAvailableException"/>.
/// Each row is first matched against the tracked entities (<see cref="TrackedRowRefresher"/>).
/// </summary>
internal sealed class LockingDataReader(DbDataReader inner, DbCommand command, TrackedEntries tracked, bool savepoint, TrackedRowRefresher? refresher) : DbDataReader
{
    private static readonly string RollbackSql = $"ROLLBACK TO SAVEPOINT {RowLockQuerySqlGenerator.Savepoint}; RELEASE SAVEPOINT {RowLockQuerySqlGenerator.Savepoint}";

    private bool _done;

    public static LockNotAvailableException Recover(DbCommand command, TrackedEntries tracked, PostgresException error)
    {
        RollBack(command);
        return Failed(tracked, error);
    }

    public static async Task<LockNotAvailableException> RecoverAsync(DbCommand command, TrackedEntries tracked, PostgresException error)
    {
        await RollBackAsync(command).ConfigureAwait(false);
        return Failed(tracked, error);
    }

    private static void RollBack(DbCommand command)
    {
        // CancellationToken-free and synchronous on purpose: leaving the transaction aborted would be worse than a short wait.
        using var rollback = command.Connection!.CreateCommand();
        rollback.Transaction = command.Transaction;
        rollback.CommandText = RollbackSql;
        rollback.ExecuteNonQuery();
    }

    private static async Task RollBackAsync(DbCommand command)
    {
        var rollback = command.Connection!.CreateCommand();
        await using (rollback.ConfigureAwait(false))
        {
            rollback.Transaction = command.Transaction;
            rollback.CommandText = RollbackSql;
            await rollback.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static LockNotAvailableException Failed(TrackedEntries tracked, PostgresException error)
    {
        tracked.DetachAll();
        RowLockTelemetry.CountLockNotAvailable("row");
        return new LockNotAvailableException(
            "55P03 lock_not_available: a row of the locked query is held by another transaction (NOWAIT or lock timeout). " +
            "RowLock rolled back to its savepoint: the transaction is still usable, and no entity this statement materialized is tracked. " +
            "In a split query (AsSplitQuery(), which RowLock uses for Include of a collection), rows that earlier statements of the query locked stay locked and tracked.", error);
    }

    public override bool Read()
    {
        bool row;
        try
        {
            row = inner.Read();
        }
        catch (PostgresException e) when (savepoint && e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            Drain();
            throw Recover(command, tracked, e);
        }

        if (row && refresher?.Refresh(inner) is { } refusal)
        {
            Drain();

            // Nothing failed on the server: draining ran the command to its end (RELEASE SAVEPOINT included), so the rows
            // read so far stay locked and the entities read so far stay tracked, current and locked.
            throw refusal;
        }

        return row;
    }

    public override async Task<bool> ReadAsync(CancellationToken cancellationToken)
    {
        bool row;
        try
        {
            row = await inner.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException e) when (savepoint && e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            await DrainAsync().ConfigureAwait(false);
            throw await RecoverAsync(command, tracked, e).ConfigureAwait(false);
        }

        if (row && refresher?.Refresh(inner) is { } refusal)
        {
            await DrainAsync().ConfigureAwait(false);

            // Nothing failed on the server: draining ran the command to its end (RELEASE SAVEPOINT included), so the rows
            // read so far stay locked and the entities read so far stay tracked, current and locked.
            throw refusal;
        }

        return row;
    }

    public override bool NextResult()
    {
        try
        {
            return inner.NextResult();
        }
        catch (PostgresException e) when (savepoint && e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            Drain();
            throw Recover(command, tracked, e);
        }
    }

    public override async Task<bool> NextResultAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await inner.NextResultAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException e) when (savepoint && e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            await DrainAsync().ConfigureAwait(false);
            throw await RecoverAsync(command, tracked, e).ConfigureAwait(false);
        }
    }

    // Closing drains the rest of the result: PostgreSQL goes on locking the rows the caller did not read (an early break),
    // and a conflict there is the caller's conflict too, since rolling back to the savepoint releases the rows it did read.
    public override void Close()
    {
        if (_done)
        {
            return;
        }

        tracked.Stop();
        try
        {
            _done = true;
            inner.Close();
        }
        catch (PostgresException e) when (savepoint && e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            Drain();
            throw Recover(command, tracked, e);
        }
    }

    public override async Task CloseAsync()
    {
        if (_done)
        {
            return;
        }

        tracked.Stop();
        try
        {
            _done = true;
            await inner.CloseAsync().ConfigureAwait(false);
        }
        catch (PostgresException e) when (savepoint && e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            await DrainAsync().ConfigureAwait(false);
            throw await RecoverAsync(command, tracked, e).ConfigureAwait(false);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Close();
            Drain();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await CloseAsync().ConfigureAwait(false);
        await DrainAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Disposes the inner reader after a failure, ignoring the error it already reported.</summary>
    private void Drain()
    {
        _done = true;
        tracked.Stop();
        try
        {
            inner.Dispose();
        }
        catch (PostgresException)
        {
        }
    }

    private async Task DrainAsync()
    {
        _done = true;
        tracked.Stop();
        try
        {
            await inner.DisposeAsync().ConfigureAwait(false);
        }
        catch (PostgresException)
        {
        }
    }

    public override object this[int ordinal] => inner[ordinal];

    public override object this[string name] => inner[name];

    public override int Depth => inner.Depth;

    public override int FieldCount => inner.FieldCount;

    public override int VisibleFieldCount => inner.VisibleFieldCount;

    public override bool HasRows => inner.HasRows;

    public override bool IsClosed => inner.IsClosed;

    public override int RecordsAffected => inner.RecordsAffected;

    public override bool GetBoolean(int ordinal) => inner.GetBoolean(ordinal);

    public override byte GetByte(int ordinal) => inner.GetByte(ordinal);

    public override long GetBytes(int ordinal, long dataOffset, byte[]? buffer, int bufferOffset, int length) => inner.GetBytes(ordinal, dataOffset, buffer, bufferOffset, length);

    public override char GetChar(int ordinal) => inner.GetChar(ordinal);

    public override long GetChars(int ordinal, long dataOffset, char[]? buffer, int bufferOffset, int length) => inner.GetChars(ordinal, dataOffset, buffer, bufferOffset, length);

    public override string GetDataTypeName(int ordinal) => inner.GetDataTypeName(ordinal);

    public override DateTime GetDateTime(int ordinal) => inner.GetDateTime(ordinal);

    public override decimal GetDecimal(int ordinal) => inner.GetDecimal(ordinal);

    public override double GetDouble(int ordinal) => inner.GetDouble(ordinal);

    public override IEnumerator GetEnumerator() => new DbEnumerator(this);

    public override Type GetFieldType(int ordinal) => inner.GetFieldType(ordinal);

    public override T GetFieldValue<T>(int ordinal) => inner.GetFieldValue<T>(ordinal);

    public override Task<T> GetFieldValueAsync<T>(int ordinal, CancellationToken cancellationToken) => inner.GetFieldValueAsync<T>(ordinal, cancellationToken);

    public override float GetFloat(int ordinal) => inner.GetFloat(ordinal);

    public override Guid GetGuid(int ordinal) => inner.GetGuid(ordinal);

    public override short GetInt16(int ordinal) => inner.GetInt16(ordinal);

    public override int GetInt32(int ordinal) => inner.GetInt32(ordinal);

    public override long GetInt64(int ordinal) => inner.GetInt64(ordinal);

    public override string GetName(int ordinal) => inner.GetName(ordinal);

    public override int GetOrdinal(string name) => inner.GetOrdinal(name);

    public override string GetString(int ordinal) => inner.GetString(ordinal);

    public override object GetValue(int ordinal) => inner.GetValue(ordinal);

    public override int GetValues(object[] values) => inner.GetValues(values);

    public override bool IsDBNull(int ordinal) => inner.IsDBNull(ordinal);

    public override Task<bool> IsDBNullAsync(int ordinal, CancellationToken cancellationToken) => inner.IsDBNullAsync(ordinal, cancellationToken);

    public override Stream GetStream(int ordinal) => inner.GetStream(ordinal);

    public override TextReader GetTextReader(int ordinal) => inner.GetTextReader(ordinal);

    public override Type GetProviderSpecificFieldType(int ordinal) => inner.GetProviderSpecificFieldType(ordinal);

    public override object GetProviderSpecificValue(int ordinal) => inner.GetProviderSpecificValue(ordinal);

    public override int GetProviderSpecificValues(object[] values) => inner.GetProviderSpecificValues(values);

    public override System.Data.DataTable? GetSchemaTable() => inner.GetSchemaTable();
}
