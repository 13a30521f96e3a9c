using Dapper;
using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// Sends a locking SELECT as its own <see cref="NpgsqlBatchCommand"/> of an <see cref="NpgsqlBatch"/>, with RowLock's
/// own statements (SAVEPOINT, lock_timeout, RELEASE) as separate commands around it, in one round trip.
/// </summary>
/// <remarks>
/// An <see cref="NpgsqlCommand"/> splits its text at every ';' that Npgsql's own scanner sees outside a string or comment,
/// and Npgsql's scanner does not read SQL exactly as PostgreSQL does (an <c>e'</c> after a digit or <c>_</c>, a <c>$$</c>
/// after a letter beyond U+00FF...): a ';' that PostgreSQL reads inside a string could end the statement for Npgsql and
/// run what follows as a statement of its own. A batch command cannot be split: with named parameters Npgsql refuses a
/// ';' followed by more SQL before sending anything (<see cref="NotSupportedException"/>, turned into an
/// <see cref="ArgumentException"/> here), and without parameters it sends the text as one extended-protocol statement,
/// which PostgreSQL refuses if it holds several. Dapper's parameter handling is kept: the parameters are built by Dapper
/// itself through <see cref="DapperBatchCommands"/>, and the rows are mapped by Dapper's row parser.
/// </remarks>
internal static class LockingBatch
{
    /// <summary>
    /// Runs <paramref name="before"/>, the locking statement and <paramref name="after"/> in one batch and returns the rows
    /// of the locking statement. <paramref name="resultSetsBefore"/> is how many of <paramref name="before"/> return rows
    /// (their result sets are skipped); result sets after the lock are read to the end, so that their errors surface.
    /// </summary>
    public static async Task<IReadOnlyList<T>> QueryAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction,
        string lockingSql, object? param, string paramName, ReadOnlyMemory<string> before, int resultSetsBefore, ReadOnlyMemory<string> after,
        CancellationToken cancellationToken, bool recordRowLockWait = false)
    {
        // With recordRowLockWait (a plain row lock: no statement of RowLock's around it), this method is the helper's only
        // async layer, so it records rowlock.lock.wait.duration itself: the client-side time of the round trip, whatever the outcome.
        var start = recordRowLockWait ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        try
        {
            // The connection's cached batch (Npgsql keeps one per connection object): the runner's commit batch reuses it.
            var batch = connection.CreateBatch();
            batch.Transaction = transaction;
            await using (batch.ConfigureAwait(false))
            {
                foreach (var sql in before.Span)
                {
                    batch.BatchCommands.Add(new NpgsqlBatchCommand(sql));
                }

                batch.BatchCommands.Add(Command(lockingSql, param, paramName));
                foreach (var sql in after.Span)
                {
                    batch.BatchCommands.Add(new NpgsqlBatchCommand(sql));
                }

                NpgsqlDataReader reader;
                try
                {
                    reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (NotSupportedException e) when (e.Message.Contains("multiple SQL statements", StringComparison.Ordinal))
                {
                    throw new ArgumentException(
                        "Npgsql reads more than one statement in the SQL (it found a ';' outside what it takes for strings and comments), where RowLock and PostgreSQL read one. "
                        + "Nothing was sent. Pass the value as a parameter instead of a literal, or write the literal without E'' strings and dollar quotes right after a name.",
                        paramName, e);
                }

                await using (reader.ConfigureAwait(false))
                {
                    for (var i = 0; i < resultSetsBefore; i++)
                    {
                        await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                    }

                    var rows = new List<T>();
                    // The non-generic parser: Dapper's GetRowParser<T> throws InvalidCastException for the simple types it maps
                    // through object (string, for one), which the generic Query<T> maps fine.
                    var parse = reader.GetRowParser(typeof(T));
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        rows.Add((T)parse(reader));
                    }

                    while (await reader.NextResultAsync(cancellationToken).ConfigureAwait(false))
                    {
                        // Restores and releases after the lock: read through, so that an error there surfaces here.
                    }

                    if (recordRowLockWait)
                    {
                        RowLockHistograms.RecordLockWait(start, "row", "acquired");
                    }

                    return rows;
                }
            }
        }
        catch (Exception e) when (recordRowLockWait)
        {
            if (RowLockWaitFailed(start, e) is { } instead)
            {
                throw instead;
            }

            throw;
        }
    }

    /// <summary>
    /// A row lock failed: records its wait in rowlock.lock.wait.duration (started at <paramref name="start"/>) and returns
    /// the exception to throw instead (a read-only transaction's 25006 explained), or null to rethrow <paramref name="e"/>.
    /// </summary>
    public static Exception? RowLockWaitFailed(long start, Exception e)
    {
        RowLockHistograms.RecordLockWait(start, "row", RowLockHistograms.FailureOutcome(e));
        return e is PostgresException { SqlState: PostgresErrorCodes.ReadOnlySqlTransaction } readOnly ? ReadOnly.Exception(readOnly) : null;
    }

    /// <summary>
    /// The locking statement with exactly the parameters Dapper would send for it. A list of parameter objects (which
    /// Dapper would run once per element) is refused: a locking SELECT runs once.
    /// </summary>
    private static NpgsqlBatchCommand Command(string lockingSql, object? param, string paramName)
    {
        if (param is null)
        {
            // Dapper sends SQL without parameters as it is (a validated locking SELECT has whitespace, so Dapper would not
            // take it for a stored procedure's name): no recording needed.
            return new NpgsqlBatchCommand(lockingSql);
        }

        var recorded = new List<DeferredWrite>(1);
        DapperBatchCommands.Record(recorded, lockingSql, param, expectedRows: null, paramName == "selectSql" ? "param" : paramName);
        if (recorded.Count != 1)
        {
            throw new ArgumentException(
                "The parameters are a list of parameter objects, which Dapper would run once per element. A locking SELECT runs once: pass one parameter object "
                + "(an array inside it is sent as one array parameter: WHERE id = ANY(@ids)).", paramName == "selectSql" ? "param" : paramName);
        }

        return recorded[0].Command;
    }
}
