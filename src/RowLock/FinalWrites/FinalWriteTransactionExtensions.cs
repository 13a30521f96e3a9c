using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// Final writes that travel with COMMIT: the row stays locked for one round trip less. A hand-written
/// read-modify-write holds its row lock across three round trips (lock, update, commit); sending the update in the
/// same round trip as COMMIT shortens the time every other worker waits for that row.
/// </summary>
/// <remarks>
/// Use them for writes whose results the work does not need (row counts, RETURNING values): they run after the work has
/// returned. Errors in them are the transaction's errors: a serialization failure or deadlock in a deferred write is
/// retried by the runner like any other, and COMMIT is never sent after a write that failed.
/// </remarks>
public static class FinalWriteTransactionExtensions
{
    /// <summary>
    /// Hands a write to the <see cref="TransactionRunner"/> running this unit of work: the runner sends it, after
    /// everything the work sent and after the writes deferred before it, in one round trip with its commit check and
    /// COMMIT. Nothing is sent now.
    /// </summary>
    /// <param name="transaction">The transaction the runner gave the work.</param>
    /// <param name="sql">One statement (e.g. an UPDATE), without a trailing ';' and without transaction control. Use Dapper parameters (<c>@id</c>) for values.</param>
    /// <param name="param">Dapper parameters, or null. Read now, values included (arrays, lists, dictionaries are copied): changing
    /// the object afterwards changes nothing. A list of parameter objects defers the statement once per element, as Dapper's
    /// <c>Execute</c> runs it once per element. Output parameters are refused: nothing reads a deferred write's results.</param>
    /// <param name="expectedRows">When set, the number of rows the write must affect (each execution, for a list of parameter
    /// objects); the server checks it before COMMIT, and on a mismatch skips COMMIT and the runner throws
    /// <see cref="UnexpectedRowCountException"/> (retried only with <see cref="RowLockRetryStrategyOptions.RetryOnUnexpectedRowCount"/>).
    /// Only for an INSERT, UPDATE or DELETE. Null (the default) checks nothing.</param>
    /// <exception cref="ArgumentException">The SQL is empty, holds more than one statement, controls the transaction
    /// (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...), is a COPY, or has no whitespace (Dapper would call it as a stored procedure);
    /// a parameter is an output parameter; or <paramref name="expectedRows"/> is given for a statement other than INSERT,
    /// UPDATE or DELETE. Nothing was queued.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="expectedRows"/> is negative.</exception>
    /// <exception cref="InvalidOperationException">The transaction is not one a <see cref="TransactionRunner"/> is running a
    /// unit of work on, or the call does not come from that work (commit a transaction of your own with
    /// <see cref="ExecuteAndCommitAsync"/>); or the attempt the call belongs to has ended or is committing (a task the work did
    /// not await): such a write is never sent with a later attempt's or another unit of work's COMMIT.</exception>
    public static void DeferUntilCommit(this NpgsqlTransaction transaction, string sql, object? param = null, int? expectedRows = null)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        ValidatedWrites.Validate(sql, nameof(sql));
        var writes = DeferredWrites.ForDeferral(transaction);
        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));
        SqlText.ValidateForSession(sql, nameof(sql), connection);
        var recorded = new List<DeferredWrite>(1);
        DapperBatchCommands.Record(recorded, sql, param, expectedRows, nameof(sql));
        writes.Add(recorded);
    }

    /// <summary>
    /// Sends one last write and COMMIT in one round trip, on a transaction the caller owns: the plain-helper form of
    /// <see cref="DeferUntilCommit"/>. When it returns, the transaction is committed (do not call <c>CommitAsync</c> after it).
    /// </summary>
    /// <param name="transaction">An open transaction the caller began and would otherwise commit.</param>
    /// <param name="sql">One statement (e.g. an UPDATE), without a trailing ';' and without transaction control. Use Dapper parameters (<c>@id</c>) for values.</param>
    /// <param name="param">Dapper parameters, or null. Output parameters are refused.</param>
    /// <param name="cancellationToken">Observed before anything is sent. Once the write and COMMIT are sent they are not
    /// cancelled: a cancelled COMMIT would leave its outcome unknown on purpose.</param>
    /// <returns>The number of rows the write affected (from a list of parameter objects: the sum).</returns>
    /// <exception cref="ArgumentException">The SQL is empty, holds more than one statement, controls the transaction, is a COPY or
    /// has no whitespace (Dapper would call it as a stored procedure); or a parameter is an output parameter. Nothing was sent.</exception>
    /// <exception cref="InvalidOperationException">The transaction is completed, or is a <see cref="TransactionRunner"/>'s (the runner commits it;
    /// use <see cref="DeferUntilCommit"/>). Nothing was sent.</exception>
    /// <exception cref="PostgresException">The write or COMMIT failed (e.g. 40001, 23505): nothing was committed. After a failed write
    /// PostgreSQL did not run COMMIT and the transaction is aborted: roll it back (disposing it does).</exception>
    /// <exception cref="NpgsqlException">Npgsql refused the batch before sending anything (e.g. more than 65,535 parameters in one
    /// statement): nothing was sent, and the transaction is still open.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost with the round trip in flight: the transaction may or may not have committed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled before anything was sent.</exception>
    public static async Task<int> ExecuteAndCommitAsync(this NpgsqlTransaction transaction, string sql, object? param = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        ValidatedWrites.Validate(sql, nameof(sql));
        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));
        if (DeferredWrites.IsRunnerTransaction(transaction))
        {
            throw new InvalidOperationException(
                "This transaction belongs to a TransactionRunner, which commits it when the work returns. Hand the write to the runner with DeferUntilCommit.");
        }

        SqlText.ValidateForSession(sql, nameof(sql), connection);
        var writes = new List<DeferredWrite>(1);
        DapperBatchCommands.Record(writes, sql, param, expectedRows: null, nameof(sql));
        cancellationToken.ThrowIfCancellationRequested();
        // A list of parameter objects with no element records no write: COMMIT alone would roll an aborted transaction
        // back without an error, so the batch then checks that the transaction is not aborted first.
        var batch = new CommitBatch(connection, transaction, writes, writes.Count == 0 ? CommitCheck.NotAborted : CommitCheck.None);
        await using (batch.ConfigureAwait(false))
        {
            return await batch.ExecuteAsync().ConfigureAwait(false);
        }
    }
}
