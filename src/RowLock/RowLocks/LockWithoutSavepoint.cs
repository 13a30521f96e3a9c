using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// NOWAIT and timed locks asked for with <see cref="RowLockClause.WithoutSavepoint"/>: the locking SELECT is sent as a
/// plain statement, so no subtransaction (and no subtransaction xid) is spent on it. A failure leaves the caller's
/// transaction aborted; the caller said it rolls back then anyway.
/// </summary>
internal static class LockWithoutSavepoint
{
    private static readonly string[] Restore = [LockTimeout.Restore];

    public static async Task<IReadOnlyList<T>> QueryAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction,
        string lockingSql, object? param, RowLockClause clause, CancellationToken cancellationToken)
    {
        try
        {
            if (clause.WaitPolicy == LockWaitPolicy.NoWait)
            {
                return await LockingBatch.QueryAsync<T>(connection, transaction, lockingSql, param, "selectSql", default, 0, default, cancellationToken).ConfigureAwait(false);
            }

            // The caller's lock_timeout is saved and put back in the same round trip when the lock is granted. When it is
            // not, the transaction is aborted, and the rollback the caller must do undoes the SET LOCAL with everything else.
            string[] before = [LockTimeout.Save, LockTimeout.SetLocal(clause.Timeout!.Value)];
            return await LockingBatch.QueryAsync<T>(connection, transaction, lockingSql, param, "selectSql", before, 1, Restore, cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            RowLockTelemetry.CountLockNotAvailable("row");
            throw new LockNotAvailableException(
                $"55P03 lock_not_available: {clause} could not lock a row that another transaction holds. Your transaction is aborted (the lock ran without a savepoint): roll it back. Show end users UserMessage.",
                LockNotAvailableException.RowMessage, e);
        }
    }
}
