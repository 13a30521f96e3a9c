using System.Globalization;
using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// Row locks taken on the caller's transaction. Every lock lives until that transaction commits or rolls back;
/// RowLock never opens, commits or closes what the caller owns.
/// </summary>
public static class RowLockTransactionExtensions
{
    /// <summary>
    /// Runs <paramref name="selectSql"/> with <paramref name="clause"/> appended (e.g. <c>FOR UPDATE NOWAIT</c>) and returns
    /// the locked rows mapped by Dapper. The rows stay locked until <paramref name="transaction"/> ends.
    /// </summary>
    /// <typeparam name="T">The row type Dapper maps each row to.</typeparam>
    /// <param name="transaction">An open transaction; the locks belong to it.</param>
    /// <param name="selectSql">
    /// One SELECT statement without a locking clause or trailing ';'. Use Dapper parameters (<c>@id</c>) for values.
    /// A statement starting with WITH needs an <see cref="RowLockClause.Of"/> list naming tables of the final SELECT's
    /// FROM clause, because a clause without OF does not lock rows read through a WITH query.
    /// </param>
    /// <param name="param">Dapper parameters for <paramref name="selectSql"/>, or null.</param>
    /// <param name="clause">Strength, wait policy and OF list, e.g. <c>RowLockClause.ForUpdate.NoWait()</c>.</param>
    /// <param name="cancellationToken">Cancels the statement, also while it waits for a lock.</param>
    /// <returns>The locked rows (with <c>SKIP LOCKED</c>, only those that were free).</returns>
    /// <exception cref="LockNotAvailableException">
    /// With <c>NoWait()</c> or <c>WithTimeout</c>: a row was locked by someone else. The transaction is still usable, unless
    /// the clause has <see cref="RowLockClause.WithoutSavepoint"/>: then it is aborted and must be rolled back.
    /// </exception>
    /// <exception cref="ArgumentException">
    /// Nothing was sent: the SQL is empty, not one statement (a <c>--</c> comment ends at a line feed or a carriage
    /// return), holds a string Npgsql would end elsewhere than PostgreSQL (an <c>E''</c> right after <c>@</c> or <c>:</c>,
    /// <c>''</c> before a backslash in an <c>E''</c>, an <c>E''</c> continued on the next line, any backslash while
    /// standard_conforming_strings is off), not a SELECT, writes (INSERT, UPDATE, DELETE, MERGE anywhere, SELECT ... INTO), or has a shape whose rows
    /// the clause would not lock or that PostgreSQL refuses with it: WITH without <see cref="RowLockClause.Of"/>, OF naming a
    /// WITH query, UNION / INTERSECT / EXCEPT, DISTINCT, GROUP BY, HAVING, a built-in aggregate, a window function, a
    /// set-returning function in the select list, an outer join's nullable side, a locking clause or FOR READ ONLY of its
    /// own, or FETCH ... WITH TIES with SKIP LOCKED; or rows the clause would not lock: no table the clause reaches (no FROM,
    /// only functions or VALUES), a function or ROWS FROM in FROM without <see cref="RowLockClause.Of"/> (PostgreSQL never
    /// locks what a function returns), a subquery in the select list. Each of these holds for the SELECT, for every subquery
    /// in FROM the clause reaches and, checked once on the server per data source, for every view it reaches (a view defined
    /// WITH, over a function or VALUES; a materialized view or foreign table). The message names the construct and says what
    /// to write instead. The SQL is sent as its own batch command, so Npgsql can never split it into several statements.
    /// </exception>
    /// <exception cref="PostgresException">
    /// PostgreSQL refused what the text does not show (a user-defined aggregate, a function that fails). With the waiting and <c>SkipLocked()</c> policies the caller's
    /// transaction is then aborted and must be rolled back; with <c>NoWait()</c> and <c>WithTimeout</c>, which run in a
    /// savepoint, RowLock rolls back to the savepoint and the transaction is still usable (not with
    /// <see cref="RowLockClause.WithoutSavepoint"/>, which runs no savepoint: the transaction is aborted).
    /// </exception>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    public static Task<IReadOnlyList<T>> LockRowsAsync<T>(this NpgsqlTransaction transaction, string selectSql, object? param,
        RowLockClause clause, CancellationToken cancellationToken = default)
    {
        var validated = ValidatedSelects.Validate(selectSql, nameof(selectSql), clause, claim: false);
        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));
        SqlText.ValidateForSession(selectSql, nameof(selectSql), connection);
        return CheckedQueryLockedAsync<T>(connection, transaction, validated.Relations, nameof(selectSql), validated.LockingSql, param, clause, cancellationToken);
    }

    /// <summary>
    /// Claims up to <paramref name="limit"/> rows that nobody else holds: appends <c>LIMIT n FOR UPDATE SKIP LOCKED</c>.
    /// Workers running this concurrently never get the same row and never wait for each other. The rows stay
    /// locked until <paramref name="transaction"/> ends, so process them (and mark them done) in that transaction.
    /// </summary>
    /// <typeparam name="T">The row type Dapper maps each row to.</typeparam>
    /// <param name="transaction">An open transaction; the claims belong to it.</param>
    /// <param name="selectSql">One SELECT without LIMIT, locking clause or trailing ';' (an ORDER BY is kept, e.g. oldest first).</param>
    /// <param name="param">Dapper parameters for <paramref name="selectSql"/>, or null.</param>
    /// <param name="limit">The most rows to claim; at least 1.</param>
    /// <param name="cancellationToken">Cancels the statement.</param>
    /// <returns>The claimed rows; empty when every matching row is taken or none is left.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="limit"/> is less than 1.</exception>
    /// <exception cref="ArgumentException">
    /// Nothing was sent: the SQL breaks one of <see cref="LockRowsAsync{T}"/>'s rules (no WITH here, as a claim has no
    /// OF list), or has a LIMIT or FETCH FIRST of its own. The message names the construct and says what to write instead.
    /// </exception>
    /// <exception cref="PostgresException">
    /// PostgreSQL refused what the text does not show (see <see cref="LockRowsAsync{T}"/>): the caller's transaction is
    /// aborted and must be rolled back.
    /// </exception>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    public static Task<IReadOnlyList<T>> ClaimRowsAsync<T>(this NpgsqlTransaction transaction, string selectSql, object? param,
        int limit, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        var clause = RowLockClause.ForUpdate.SkipLocked();
        var validated = ValidatedSelects.Validate(selectSql, nameof(selectSql), clause, claim: true);
        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));
        SqlText.ValidateForSession(selectSql, nameof(selectSql), connection);
        var sql = string.Create(CultureInfo.InvariantCulture, $"{selectSql}\nLIMIT {limit}\nFOR UPDATE SKIP LOCKED");
        return CheckedQueryLockedAsync<T>(connection, transaction, validated.Relations, nameof(selectSql), sql, param, clause, cancellationToken);
    }

    /// <summary>
    /// Locks the rows of <paramref name="table"/> whose <paramref name="keyColumn"/> is one of <paramref name="keys"/>,
    /// always in ascending key order: when every caller locks through here, two transactions can never lock the same
    /// rows in opposite orders, so they cannot deadlock. Names are quoted; keys are sent as one array parameter.
    /// </summary>
    /// <typeparam name="T">The row type Dapper maps each row (<c>SELECT *</c>) to.</typeparam>
    /// <typeparam name="TKey">The key type (e.g. <see cref="long"/>, <see cref="Guid"/>, <see cref="string"/>).</typeparam>
    /// <param name="transaction">An open transaction; the locks belong to it.</param>
    /// <param name="table">The table name, as it is spelled in the database (it is quoted, so case matters). Found through <c>search_path</c>.</param>
    /// <param name="keyColumn">The key column's name, as it is spelled in the database.</param>
    /// <param name="keys">The keys to lock; duplicates are ignored; at least one.</param>
    /// <param name="clause">Strength and wait policy; <c>Of</c> is not needed here.</param>
    /// <param name="cancellationToken">Cancels the statement, also while it waits for a lock.</param>
    /// <returns>The locked rows in ascending key order. Keys with no row are simply absent.</returns>
    /// <exception cref="ArgumentException">An empty key list, or a table or column name that is empty, has NUL or is longer than 63 bytes.</exception>
    /// <exception cref="LockNotAvailableException">
    /// With <c>NoWait()</c> or <c>WithTimeout</c>: a row was locked by someone else. The transaction is still usable, unless
    /// the clause has <see cref="RowLockClause.WithoutSavepoint"/>: then it is aborted and must be rolled back.
    /// </exception>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    public static Task<IReadOnlyList<T>> LockRowsByKeyAsync<T, TKey>(this NpgsqlTransaction transaction, string table, string keyColumn,
        IEnumerable<TKey> keys, RowLockClause clause, CancellationToken cancellationToken = default)
        where TKey : notnull
    {
        var quotedTable = Identifier.Quote(table, nameof(table));
        var quotedKey = Identifier.Quote(keyColumn, nameof(keyColumn));
        ArgumentNullException.ThrowIfNull(keys);
        var comparer = typeof(TKey) == typeof(string) ? (IComparer<TKey>)StringComparer.Ordinal : Comparer<TKey>.Default;
        var sorted = keys.Distinct().Order(comparer).ToArray();
        if (sorted.Length == 0)
        {
            throw new ArgumentException("Pass at least one key to lock.", nameof(keys));
        }

        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));

        // ORDER BY under the locking clause makes PostgreSQL lock the rows in key order.
        var sql = $"SELECT * FROM {quotedTable} WHERE {quotedKey} = ANY(@keys) ORDER BY {quotedKey}\n{clause.ToSql()}";
        return CheckedQueryLockedAsync<T>(connection, transaction, new LockedRelations([quotedTable]), nameof(table), sql, new { keys = sorted }, clause, cancellationToken);
    }

    /// <summary>
    /// The server check of what the text cannot show (views), then the locking statement. After the first call for the
    /// same relations on the same data source the check is a cache hit: no round trip, no extra async layer.
    /// </summary>
    private static Task<IReadOnlyList<T>> CheckedQueryLockedAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction, LockedRelations relations,
        string paramName, string lockingSql, object? param, RowLockClause clause, CancellationToken cancellationToken)
    {
        var check = ServerShapeCheck.EnsureAsync(connection, transaction, relations, paramName, cancellationToken);
        return check.IsCompletedSuccessfully
            ? QueryLockedAsync<T>(connection, transaction, lockingSql, param, clause, cancellationToken)
            : CheckThenQueryLockedAsync<T>(check, connection, transaction, lockingSql, param, clause, cancellationToken);
    }

    private static async Task<IReadOnlyList<T>> CheckThenQueryLockedAsync<T>(ValueTask check, NpgsqlConnection connection, NpgsqlTransaction transaction,
        string lockingSql, object? param, RowLockClause clause, CancellationToken cancellationToken)
    {
        await check.ConfigureAwait(false);
        return await QueryLockedAsync<T>(connection, transaction, lockingSql, param, clause, cancellationToken).ConfigureAwait(false);
    }

    private const string Savepoint = "rowlock_lock";

    private static readonly string[] SavepointOnly = [$"SAVEPOINT {Savepoint}"];

    private static readonly string[] ReleaseOnly = [$"RELEASE SAVEPOINT {Savepoint}"];

    private static readonly string[] RestoreAndRelease = [LockTimeout.Restore, $"RELEASE SAVEPOINT {Savepoint}"];

    /// <summary>
    /// Sends the locking SELECT in one round trip. NOWAIT and timed waits run inside a savepoint, so that a failure
    /// can be rolled back to it and the caller's transaction stays usable; a timed wait also saves and restores the
    /// caller's lock_timeout inside the same batch, so the timeout never applies to later statements.
    /// </summary>
    private static Task<IReadOnlyList<T>> QueryLockedAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction,
        string lockingSql, object? param, RowLockClause clause, CancellationToken cancellationToken) =>
        // The plain statement (waiting or SKIP LOCKED, no savepoint) is one async layer, which records the lock wait itself.
        clause.WaitPolicy is LockWaitPolicy.Wait or LockWaitPolicy.SkipLocked
            ? LockingBatch.QueryAsync<T>(connection, transaction, lockingSql, param, "selectSql", default, 0, default, cancellationToken, recordRowLockWait: true)
            : QueryLockedRecordedAsync<T>(connection, transaction, lockingSql, param, clause, cancellationToken);

    /// <summary>A NOWAIT or timed lock, with its savepoint; rowlock.lock.wait.duration is the client-side time of the
    /// locking round trip(s), whatever the outcome.</summary>
    private static async Task<IReadOnlyList<T>> QueryLockedRecordedAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction,
        string lockingSql, object? param, RowLockClause clause, CancellationToken cancellationToken)
    {
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            var rows = await QueryLockedCoreAsync<T>(connection, transaction, lockingSql, param, clause, cancellationToken).ConfigureAwait(false);
            RowLockHistograms.RecordLockWait(start, "row", "acquired");
            return rows;
        }
        catch (Exception e)
        {
            if (LockingBatch.RowLockWaitFailed(start, e) is { } instead)
            {
                throw instead;
            }

            throw;
        }
    }

    private static async Task<IReadOnlyList<T>> QueryLockedCoreAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction,
        string lockingSql, object? param, RowLockClause clause, CancellationToken cancellationToken)
    {
        if (clause.SkipsSavepoint)
        {
            return await LockWithoutSavepoint.QueryAsync<T>(connection, transaction, lockingSql, param, clause, cancellationToken).ConfigureAwait(false);
        }

        switch (clause.WaitPolicy)
        {
            case LockWaitPolicy.Wait:
            case LockWaitPolicy.SkipLocked:
                return await LockingBatch.QueryAsync<T>(connection, transaction, lockingSql, param, "selectSql", default, 0, default, cancellationToken).ConfigureAwait(false);

            case LockWaitPolicy.NoWait:
                try
                {
                    return await LockingBatch.QueryAsync<T>(connection, transaction, lockingSql, param, "selectSql",
                        SavepointOnly, 0, ReleaseOnly, cancellationToken).ConfigureAwait(false);
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
                {
                    throw await LockNotAvailableAsync(connection, transaction, clause, e).ConfigureAwait(false);
                }
                catch (PostgresException)
                {
                    // Any other server error inside the savepoint (a failing function, a view the check could not see...):
                    // roll back to it so the caller's transaction stays usable, then let the error go on.
                    await SavepointRollback.RollBackQuietlyAsync(connection, transaction, Savepoint).ConfigureAwait(false);
                    throw;
                }

            case LockWaitPolicy.Timeout:
                try
                {
                    // The saved and the restored lock_timeout each answer one row: one result set before the lock.
                    string[] before = [$"SAVEPOINT {Savepoint}", LockTimeout.Save, LockTimeout.SetLocal(clause.Timeout!.Value)];
                    return await LockingBatch.QueryAsync<T>(connection, transaction, lockingSql, param, "selectSql",
                        before, 1, RestoreAndRelease, cancellationToken).ConfigureAwait(false);
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
                {
                    throw await LockNotAvailableAsync(connection, transaction, clause, e).ConfigureAwait(false);
                }
                catch (PostgresException)
                {
                    await SavepointRollback.RollBackQuietlyAsync(connection, transaction, Savepoint).ConfigureAwait(false);
                    throw;
                }

            default:
                throw new ArgumentOutOfRangeException(nameof(clause), clause.WaitPolicy, "Unknown wait policy.");
        }
    }


    private static async Task<LockNotAvailableException> LockNotAvailableAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, RowLockClause clause, PostgresException error)
    {
        // Undo the failed statement (and the SET LOCAL) so the caller's transaction can go on; CancellationToken.None
        // because leaving the transaction aborted would be worse than a short wait.
        var rollback = new NpgsqlCommand($"ROLLBACK TO SAVEPOINT {Savepoint}; RELEASE SAVEPOINT {Savepoint}", connection, transaction);
        await using (rollback.ConfigureAwait(false))
        {
            await rollback.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }

        RowLockTelemetry.CountLockNotAvailable("row");
        return new LockNotAvailableException(
            $"55P03 lock_not_available: {clause} could not lock a row that another transaction holds. Your transaction is still usable. Show end users UserMessage.",
            LockNotAvailableException.RowMessage, error);
    }
}
