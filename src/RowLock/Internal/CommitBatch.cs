using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// The commit round trip: the deferred writes, the runner's check (when there is one) and COMMIT, in one batch.
/// PostgreSQL runs them in order and skips the rest of the batch after an error, so a server error reported for any
/// statement before COMMIT proves COMMIT never ran: the transaction is rolled back for certain. Which statement failed is
/// told by which ones completed (Npgsql sets a batch command's <see cref="NpgsqlBatchCommand.StatementType"/> when its
/// CommandComplete arrives): <see cref="NpgsqlException.BatchCommand"/> would say it directly, but only when the
/// connection string sets Include Failed Batched Command.
/// </summary>
internal sealed class CommitBatch : IDisposable, IAsyncDisposable
{
    /// <summary>Succeeds only in the transaction the runner began, which holds its savepoint; in another one (the work
    /// ended the runner's and began a new one) it fails with 3B001, so COMMIT never runs. Placed after the deferred writes:
    /// they then run in the same subtransaction as the work, so a row the work locked and a deferred write updates keeps one
    /// locker (no multixact).</summary>
    private const string CheckSql = "RELEASE SAVEPOINT " + UnitOfWorkAttempt.SavepointName;

    /// <summary>The check of a runner that does not mark its transaction (<see cref="TransactionRunnerOptions.VerifyTransactionOwnership"/>
    /// off): any statement fails in an aborted transaction (25P02), where COMMIT alone would roll back without an error.
    /// A SELECT without a target list reads nothing.</summary>
    private const string NotAbortedSql = "SELECT";

    private readonly NpgsqlTransaction _transaction;
    private readonly NpgsqlBatch _batch;
    private readonly IReadOnlyList<DeferredWrite> _writes;
    private readonly NpgsqlBatchCommand? _check;
    private readonly NpgsqlBatchCommand _commit = new("COMMIT");

    public CommitBatch(NpgsqlConnection connection, NpgsqlTransaction transaction, IReadOnlyList<DeferredWrite> writes, CommitCheck check)
    {
        _transaction = transaction;
        // The connection's cached batch: a locking helper's batch earlier in the transaction left it there when disposed.
        _batch = connection.CreateBatch();
        _batch.Transaction = transaction;
        _writes = writes;
        foreach (var write in writes)
        {
            _batch.BatchCommands.Add(write.Command);
        }

        if (check != CommitCheck.None)
        {
            _check = new NpgsqlBatchCommand(check == CommitCheck.RunnerSavepoint ? CheckSql : NotAbortedSql);
            _batch.BatchCommands.Add(_check);
        }

        _batch.BatchCommands.Add(_commit);
    }

    /// <summary>Sends the batch and reads every result. COMMIT is never cancelled half-way: that would make its outcome unknown on purpose.</summary>
    /// <returns>The rows the deferred writes affected, summed.</returns>
    /// <exception cref="PostgresException">Nothing was committed: a statement before COMMIT failed (see <see cref="FailedBeforeCommit"/>),
    /// or COMMIT itself was refused with an ordinary error (40001 under SERIALIZABLE, a deferred constraint).</exception>
    /// <exception cref="UnexpectedRowCountException">A write given expectedRows affected another number of rows; the server skipped COMMIT.</exception>
    /// <exception cref="NpgsqlException">Npgsql refused the batch before sending it (more than 65,535 parameters, ...): nothing was
    /// sent, and the transaction is still open.</exception>
    /// <exception cref="CommitOutcomeUnknownException">The connection was lost once COMMIT may have run.</exception>
    public async Task<int> ExecuteAsync()
    {
        try
        {
            await SendAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (Translate(e) is { } translated)
        {
            throw translated;
        }

        return RowsWritten();
    }

    /// <summary>
    /// Sends the batch and reads every result (rows of a RETURNING or of the check are skipped), for a caller that awaits
    /// it in its own async method (the runner's attempt, which so spares a state machine per commit). The first server
    /// error comes out as it is: pass it to <see cref="Translate"/>.
    /// </summary>
    public Task<int> SendAsync() => _batch.ExecuteNonQueryAsync(CancellationToken.None);

    /// <summary>
    /// What a failure of <see cref="SendAsync"/> means, as <see cref="ExecuteAsync"/> documents: the exception to throw
    /// instead (<see cref="UnexpectedRowCountException"/>, <see cref="CommitOutcomeUnknownException"/>), or null to
    /// rethrow it as it is (nothing was committed, for certain).
    /// </summary>
    public Exception? Translate(Exception e)
    {
        switch (e)
        {
            case PostgresException pg when FailedBeforeCommit() || !RowLockPredicates.IsConnectionLoss(pg):
                return FailedWrite() is { } write && RowCountCheck.Mismatch(pg, write) is { } mismatch ? mismatch : null;
            case NpgsqlException when e is not PostgresException && NothingSent():
                // Npgsql checks a batch (parameter count, ...) before writing any of it, and a failure while writing or reading
                // breaks the connection: an unbroken connection still in the transaction never got the COMMIT.
                return null;
            case NpgsqlException or IOException:
                return new CommitOutcomeUnknownException(e);
            default:
                return null;
        }
    }

    /// <summary>After a successful <see cref="SendAsync"/>: the rows the deferred writes affected, summed.</summary>
    private int RowsWritten()
    {
        var rows = 0;
        foreach (var write in _writes)
        {
            // A counted write returns one row of its own; it affected what it had to, or the server would have failed it.
            rows += write.ExpectedRows ?? Math.Max(0, write.Command.RecordsAffected);
        }

        return rows;
    }

    /// <summary>
    /// After a server error: did it come before the statement ahead of COMMIT completed? Then COMMIT never ran (a server
    /// error ends the batch: nothing after the failed statement runs) and the transaction is rolled back for certain.
    /// A batch that is COMMIT alone has nothing before COMMIT: its error is COMMIT's own (no caller builds one today:
    /// a batch without writes always carries a check).
    /// </summary>
    public bool FailedBeforeCommit()
    {
        var commands = _batch.BatchCommands;
        return commands.Count > 1 && !Completed(commands[^2]);
    }

    /// <summary>After a server error: did the runner's check fail (every deferred write completed, the check did not)?
    /// With 3B001, the transaction is not the one the runner began.</summary>
    public bool CheckFailed() => _check is not null && !Completed(_check) && _writes.All(w => Completed(w.Command));

    /// <summary>After a server error: the first write that did not complete, if a write failed.</summary>
    private DeferredWrite? FailedWrite()
    {
        foreach (var write in _writes)
        {
            if (!Completed(write.Command))
            {
                return write;
            }
        }

        return null;
    }

    private bool NothingSent()
    {
        var connection = _batch.Connection;
        if (connection is null || connection.FullState.HasFlag(System.Data.ConnectionState.Broken) || connection.State != System.Data.ConnectionState.Open
            || TransactionGuard.IsCompleted(_transaction))
        {
            return false;
        }

        var commands = _batch.BatchCommands;
        for (var i = 0; i < commands.Count; i++)
        {
            if (Completed(commands[i]))
            {
                return false;
            }
        }

        return true;
    }

    private static bool Completed(NpgsqlBatchCommand command) => command.StatementType != StatementType.Unknown;

    /// <summary>Hands the batch back to its connection's cache (Npgsql's batch disposal is synchronous).</summary>
    public void Dispose() => _batch.Dispose();

    public ValueTask DisposeAsync() => _batch.DisposeAsync();
}

/// <summary>What the commit batch checks before COMMIT.</summary>
internal enum CommitCheck
{
    /// <summary>Nothing: the batch has a write of the caller's, which fails in an aborted transaction itself (<c>ExecuteAndCommitAsync</c>
    /// with at least one write; with none it uses <see cref="NotAborted"/>).</summary>
    None,

    /// <summary>The runner's savepoint is released: the transaction is the one the runner began, and it is not aborted.</summary>
    RunnerSavepoint,

    /// <summary>The transaction is not aborted (a runner that does not mark its transaction; <c>ExecuteAndCommitAsync</c> with no write).</summary>
    NotAborted,
}
