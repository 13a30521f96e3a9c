using Npgsql;

namespace RowLock.Internal;

/// <summary>Rolls a caller's transaction back to one of RowLock's savepoints after a failed statement, so it stays usable.</summary>
internal static class SavepointRollback
{
    /// <summary>
    /// Sends <c>ROLLBACK TO SAVEPOINT name; RELEASE SAVEPOINT name</c>, with <see cref="CancellationToken.None"/> (leaving the
    /// transaction aborted would be worse than a short wait). Fails quietly when the savepoint was never set (the transaction
    /// was already aborted) or the connection broke: the caller's original error tells the story.
    /// </summary>
    public static async Task RollBackQuietlyAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string savepoint)
    {
        if (connection.State != System.Data.ConnectionState.Open || TransactionGuard.IsCompleted(transaction))
        {
            return;
        }

        var rollback = new NpgsqlCommand($"ROLLBACK TO SAVEPOINT {savepoint}; RELEASE SAVEPOINT {savepoint}", connection, transaction);
        await using (rollback.ConfigureAwait(false))
        {
            try
            {
                await rollback.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (NpgsqlException)
            {
                // The savepoint was never set, or the connection is gone: the caller rethrows the original error.
            }
        }
    }
}
