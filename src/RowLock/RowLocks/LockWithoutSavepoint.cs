using Dapper;
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
    public static async Task<IReadOnlyList<T>> QueryAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction,
        string lockingSql, object? param, RowLockClause clause, CancellationToken cancellationToken)
    {
        try
        {
            if (clause.WaitPolicy == LockWaitPolicy.NoWait)
            {
                var rows = await connection.QueryAsync<T>(new CommandDefinition(lockingSql, param, transaction, cancellationToken: cancellationToken)).ConfigureAwait(false);
                return rows.AsList();
            }

            // The caller's lock_timeout is saved and put back in the same round trip when the lock is granted. When it is
            // not, the transaction is aborted, and the rollback the caller must do undoes the SET LOCAL with everything else.
            var sql = $"{LockTimeout.Save};\n{LockTimeout.SetLocal(clause.Timeout!.Value)};\n{lockingSql};\n{LockTimeout.Restore}";
            return await LockTimeout.QueryTimedAsync<T>(connection, transaction, sql, param, cancellationToken).ConfigureAwait(false);
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
