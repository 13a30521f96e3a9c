using System.Data;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// One attempt of a unit of work: a connection from the data source, a transaction marked as the runner's, the work,
/// and the commit protocol that tells "rolled back for certain" (safe to retry) from "outcome unknown" (never retried).
/// </summary>
/// <remarks>
/// <para>The marker: a savepoint the runner creates right after BEGIN. Npgsql sends neither BEGIN nor a savepoint on its
/// own: both travel in front of the work's first statement, so the attempt costs no round trip of the runner's own and
/// the transaction's snapshot (REPEATABLE READ, SERIALIZABLE) is taken by the work's first statement, as in hand-written
/// code (BEGIN and SAVEPOINT take no snapshot). The commit batch releases the savepoint before COMMIT: a work that ended
/// the runner's transaction itself and began another one (a raw <c>COMMIT; BEGIN</c>, <c>COMMIT AND CHAIN</c>) has lost
/// it, so the release fails (3B001) and the server skips COMMIT. The price is one subtransaction per unit of work (a
/// second transaction id when the work writes); with <see cref="TransactionRunnerOptions.VerifyTransactionOwnership"/> off
/// there is no marker, and the check is a bare SELECT that only an aborted transaction fails.</para>
/// <para>The first attempt runs outside Polly (<see cref="UnitOfWorkRetrier"/>), and the whole attempt is this one async
/// method: on the path where the work commits, RowLock allocates two state machines per unit of work.</para>
/// <para>A pooled connection the server has already closed (idle_session_timeout, a dead route) fails the work's first
/// statement; nothing was committed, so the attempt is retried on a fresh connection.</para>
/// <para>The commit batch is <c>deferred writes; check; COMMIT</c> in one round trip (<see cref="CommitBatch"/>). PostgreSQL executes them in order and skips the
/// rest of the batch after an error, so a server error reported for the check proves COMMIT never ran: an aborted
/// transaction (25P02), a foreign transaction (no savepoint, 3B001), or a session the server ended while the connection
/// sat idle (FATAL, e.g. 57P01), which is a certain rollback and so retryable. Only a failure once the check has
/// answered, or a lost connection with no server error, leaves the outcome of COMMIT unknown.</para>
/// </remarks>
internal static class UnitOfWorkAttempt
{
    /// <summary>The savepoint that marks the runner's transaction; the commit batch releases it (<see cref="CommitBatch"/>).</summary>
    public const string SavepointName = "rowlock_unit_of_work";

    /// <summary>One attempt of <see cref="TransactionRunner"/>: a connection from <paramref name="dataSource"/>, BEGIN, the work, the commit protocol.</summary>
    public static Task<T> RunAsync<T>(
        NpgsqlDataSource dataSource,
        IsolationLevel isolationLevel,
        ILogger logger,
        UnitOfWork<T> work,
        CancellationToken cancellationToken,
        TimeSpan lockWaitWarningThreshold = default,
        bool verifyOwnership = true) =>
        AttemptAsync(dataSource, null, isolationLevel, lockWaitWarningThreshold, verifyOwnership, logger, work, cancellationToken);

    /// <summary>
    /// The attempt on a transaction just begun (by the EF Core package's runner): mark it, run the work, then the commit
    /// protocol. Every failure comes out classified: retryable, unknown, or the work's own.
    /// </summary>
    public static Task<T> RunInTransactionAsync<T>(
        NpgsqlTransaction transaction,
        ILogger logger,
        Func<CancellationToken, Task<T>> work,
        CancellationToken cancellationToken,
        bool verifyOwnership = true) =>
        AttemptAsync(null, transaction, default, default, verifyOwnership, logger, new UnitOfWork<T>(work), cancellationToken);

    /// <summary>
    /// The whole attempt in one async method, so that an attempt costs one state machine of RowLock's own: open and
    /// BEGIN (when <paramref name="begun"/> is null), the marker, the work, the checks, the commit round trip.
    /// </summary>
    private static async Task<T> AttemptAsync<T>(
        NpgsqlDataSource? dataSource,
        NpgsqlTransaction? begun,
        IsolationLevel isolationLevel,
        TimeSpan lockWaitWarningThreshold,
        bool verifyOwnership,
        ILogger logger,
        UnitOfWork<T> work,
        CancellationToken cancellationToken)
    {
        // Failures are caught into a local and handled after the try by a method of their own (no await inside a catch):
        // the rare paths then add nothing to this method's state machine, allocated once per attempt.
        NpgsqlConnection? owned = null;
        LockWaitWatch? watch = null;
        NpgsqlTransaction transaction;
        if (begun is null)
        {
            try
            {
                owned = await dataSource!.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (NpgsqlException e) when (IsOpenFailure(e, cancellationToken))
            {
                // A connection that cannot be had is a certain "nothing sent" (see IsOpenFailure).
                throw ConnectionLostBeforeCommitException.CannotOpen(e);
            }

            try
            {
                watch = LockWaitWatch.Start(dataSource, owned.ProcessID, lockWaitWarningThreshold, logger, kind: null, repeat: true);

                // Npgsql sends nothing here: BEGIN is prepended to the work's first statement.
                transaction = owned.BeginTransaction(isolationLevel);
            }
            catch
            {
                watch?.Dispose();
                owned.Dispose();
                throw;
            }
        }
        else
        {
            transaction = begun;
        }

        try
        {
            var connection = transaction.Connection ?? throw new InvalidOperationException("The runner's transaction has no connection.");
            var writes = DeferredWrites.Begin(transaction);
            try
            {
                if (verifyOwnership)
                {
                    // Prepended, not sent: it travels with BEGIN in front of the work's first statement.
                    transaction.Save(SavepointName);
                }

                var started = Stopwatch.GetTimestamp();

                T result;
                Exception? failure = null;
                try
                {
                    var running = work.Start(transaction, cancellationToken);
                    await running.ConfigureAwait(false);
                    result = work.ResultOf(running);
                }
                catch (Exception e) when (BrokeTheConnection(e, connection, cancellationToken))
                {
                    // Npgsql broke the connection (a statement got no answer within Command Timeout and the cancel did not get
                    // through either): the server rolls back whatever it still holds; nothing was committed. A command timeout
                    // whose cancel worked leaves the connection open and is not retried (like 57014).
                    throw ConnectionLostBeforeCommitException.BrokeDuringWork(e);
                }
                catch (Exception e)
                {
                    failure = e;
                    result = default!;
                }

                if (failure is not null)
                {
                    ExceptionDispatchInfo.Throw(await WorkFailedAsync(failure, connection, transaction).ConfigureAwait(false));
                }

                ThrowIfConnectionLost(connection, transaction);
                if (TransactionGuard.IsCompleted(transaction))
                {
                    throw await EndedByTheWorkAsync(connection, started).ConfigureAwait(false);
                }

                // The commit round trip: the deferred writes, the check and COMMIT (see CommitBatch).
                writes.Seal();
                using var batch = new CommitBatch(connection, transaction, writes.Writes, verifyOwnership ? CommitCheck.RunnerSavepoint : CommitCheck.NotAborted);
                try
                {
                    await batch.SendAsync().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    failure = e;
                }

                if (failure is not null)
                {
                    ExceptionDispatchInfo.Throw(await CommitFailedAsync(failure, batch, transaction, logger).ConfigureAwait(false));
                }

                return result;
            }
            finally
            {
                DeferredWrites.End(writes);
            }
        }
        finally
        {
            if (owned is not null)
            {
                try
                {
                    await transaction.DisposeAsync().ConfigureAwait(false);
                }
                finally
                {
                    watch?.Dispose();
                    await owned.DisposeAsync().ConfigureAwait(false);
                }
            }
        }
    }

    /// <summary>
    /// The work threw: roll back, and tell a database error the work caught and carried on from (the transaction is
    /// aborted) from the work's own failure. Returns the exception to throw (the work's own, as it is, unless swallowed).
    /// </summary>
    private static async Task<Exception> WorkFailedAsync(Exception e, NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        var swallowed = RowLockPredicates.FindSqlState(e) == PostgresErrorCodes.InFailedSqlTransaction
            && await IsAbortedAsync(connection, transaction).ConfigureAwait(false);
        await RollBackQuietlyAsync(transaction).ConfigureAwait(false);
        return swallowed ? SwallowedError(e) : e;
    }

    /// <summary>
    /// The commit round trip failed: classify it (see <see cref="CommitBatch"/>). Returns the exception to throw: an unknown
    /// outcome (logged), or, with the transaction rolled back for certain, the failure itself or what it proves (a swallowed
    /// error, a foreign transaction).
    /// </summary>
    private static async Task<Exception> CommitFailedAsync(Exception sent, CommitBatch batch, NpgsqlTransaction transaction, ILogger logger)
    {
        var e = batch.Translate(sent) ?? sent;
        if (e is CommitOutcomeUnknownException unknown)
        {
            RunnerLog.CommitOutcomeUnknown(logger, unknown.InnerException ?? unknown);
            return unknown;
        }

        // Nothing was committed, for certain: a deferred write or the check failed and the server skipped COMMIT
        // (or ended the session first), COMMIT itself was refused, or Npgsql refused the batch before sending it.
        // A deferred write's 40001 or 40P01 is retried like any other; a session-ending error is a retryable
        // connection loss; a row count mismatch is retried only when asked; anything else propagates as it is.
        await RollBackQuietlyAsync(transaction).ConfigureAwait(false);
        if (e is PostgresException pg && batch.FailedBeforeCommit())
        {
            if (pg.SqlState == PostgresErrorCodes.InFailedSqlTransaction)
            {
                return SwallowedError(pg);
            }

            if (batch.CheckFailed() && pg.SqlState == PostgresErrorCodes.InvalidSavepointSpecification)
            {
                return ForeignTransaction(pg);
            }
        }

        return e;
    }

    /// <summary>A non-server failure (possibly wrapped, e.g. by EF) after which Npgsql marked the connection broken.</summary>
    private static bool BrokeTheConnection(Exception e, NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested || RowLockPredicates.IsConnectionLoss(e) || !connection.FullState.HasFlag(ConnectionState.Broken))
        {
            return false;
        }

        for (var x = e; x is not null; x = x.InnerException)
        {
            if (x is NpgsqlException and not PostgresException)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Is this failure to open a connection a certain "nothing sent" that a new attempt may cure? A connection that cannot
    /// be had is retryable, whatever Npgsql says (during a failover "No suitable host was found" carries no inner exception
    /// and is not transient for Npgsql). Server refusals that a retry cannot cure (authentication, class 28; no such
    /// database, 3D000) stay as they are.
    /// </summary>
    public static bool IsOpenFailure(Exception e, CancellationToken cancellationToken) =>
        e is NpgsqlException and not PostgresException && !RowLockPredicates.IsConnectionLoss(e) && !cancellationToken.IsCancellationRequested;

    /// <summary>
    /// The work ended the transaction with a statement of its own (Npgsql saw the session leave it). When the work
    /// prepared it for two-phase commit, the transaction still holds its locks, so say so: asked only on this misuse path.
    /// </summary>
    private static async Task<InvalidOperationException> EndedByTheWorkAsync(NpgsqlConnection connection, long started)
    {
        const string Ended = "The work committed or rolled back the runner's transaction itself. The runner owns it: return from the work to commit, throw to roll back.";
        string[] prepared = [];
        try
        {
            // pg_prepared_xacts does not say which session prepared a transaction: list those this user prepared in this
            // database while the work ran.
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds + 1;
            var command = new NpgsqlCommand(
                "SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE database = current_database() AND owner = current_user AND prepared >= statement_timestamp() - make_interval(secs => $1)",
                connection) { Parameters = { new NpgsqlParameter { Value = seconds } } };
            await using (command.ConfigureAwait(false))
            {
                var gids = new List<string>();
                var reader = await command.ExecuteReaderAsync(CancellationToken.None).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(CancellationToken.None).ConfigureAwait(false))
                    {
                        gids.Add(reader.GetString(0));
                    }
                }

                prepared = [.. gids];
            }
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException)
        {
            // The check is only for the message.
        }

        if (prepared.Length == 0)
        {
            return new InvalidOperationException(Ended);
        }

        var names = string.Join(", ", prepared.Select(g => "'" + g.Replace("'", "''", StringComparison.Ordinal) + "'"));
        return new InvalidOperationException(
            "The work ran PREPARE TRANSACTION on the runner's transaction: it is now a prepared transaction, neither committed nor rolled back, and it keeps " +
            $"its row and table locks until someone runs ROLLBACK PREPARED (or COMMIT PREPARED) with its name. Prepared by this user in this database while the work ran: {names} " +
            $"(see pg_prepared_xacts); for example ROLLBACK PREPARED {names.Split(", ")[0]}. The runner owns the transaction: return from the work to commit, throw to roll back.");
    }

    /// <summary>
    /// The connection broke during the work and the work returned anyway: nothing was sent since, so the server rolled
    /// back. Npgsql keeps the error that broke the connection on the disposed transaction; report it when it is there.
    /// </summary>
    private static void ThrowIfConnectionLost(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        if (!connection.FullState.HasFlag(ConnectionState.Broken))
        {
            return;
        }

        Exception? breakReason = null;
        try
        {
            _ = transaction.Connection;
        }
        catch (ObjectDisposedException e)
        {
            breakReason = e.InnerException;
        }

        throw ConnectionLostBeforeCommitException.Swallowed(breakReason);
    }

    /// <summary>Is the runner's own transaction aborted? Asked only when the work threw 25P02, which may come from another connection.</summary>
    private static async Task<bool> IsAbortedAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        try
        {
            var probe = new NpgsqlCommand("SELECT 1", connection, transaction);
            await using (probe.ConfigureAwait(false))
            {
                await probe.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
            }

            return false;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InFailedSqlTransaction)
        {
            return true;
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException)
        {
            return false;
        }
    }

    private static async Task RollBackQuietlyAsync(NpgsqlTransaction transaction)
    {
        try
        {
            if (transaction.Connection is { State: ConnectionState.Open })
            {
                await transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException)
        {
            // The connection is gone or the transaction already ended: the server has rolled back. The original error matters.
        }
    }

    /// <summary>
    /// No route tells which statement aborted the transaction (Npgsql keeps no per-connection error, and guessing from
    /// errors seen elsewhere blamed other connections), so this says what is certain and is not retried: retrying a
    /// swallowed 23505 or a bug would fail the same way every attempt.
    /// </summary>
    private static RowLockException SwallowedError(Exception inner) => new(
        "The work caught a database error on the runner's transaction and continued; the transaction was aborted and rolled back. " +
        "Let the error propagate out of the work so the runner can classify it (40001, 40P01 and lost connections are retried); " +
        "to recover from an expected error inside the work, run that statement under a savepoint.",
        PostgresErrorCodes.InFailedSqlTransaction,
        inner);

    private static InvalidOperationException ForeignTransaction(Exception inner) => new(
        "The work ended the runner's transaction itself (a raw COMMIT or ROLLBACK) and began another one. What it did before that statement " +
        "was committed or rolled back there and the runner cannot undo it; what it did after was rolled back, and nothing was retried. " +
        "The runner owns the transaction: return from the work to commit, throw to roll back.",
        inner);
}
