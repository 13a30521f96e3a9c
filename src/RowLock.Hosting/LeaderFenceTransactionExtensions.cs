using Npgsql;
using RowLock.Hosting.Internal;

namespace RowLock.Hosting;

/// <summary>Makes a transaction conditional on a leadership's epoch still being the current one.</summary>
public static class LeaderFenceTransactionExtensions
{
    /// <summary>
    /// Fences the transaction with <paramref name="leadership"/>'s epoch: reads the election's row in
    /// <c>rowlock_leader_epochs</c> with <c>FOR KEY SHARE</c> and throws <see cref="LeadershipLostException"/> when its epoch
    /// is not the leadership's. The row lock is held until the transaction ends, and a new leader's epoch increment takes
    /// <c>FOR UPDATE</c> on that row, so it waits for this transaction: either this transaction commits before any newer
    /// epoch exists, or it fails here. The whole transaction is covered (statements before and after the fence, and writes
    /// deferred with <see cref="FinalWriteTransactionExtensions.DeferUntilCommit"/>, which travel with COMMIT).
    /// </summary>
    /// <remarks>
    /// <para>Fence first: in REPEATABLE READ or SERIALIZABLE, a fence after the snapshot was taken fails with a
    /// serialization failure (40001) when the row changed since (a <see cref="TransactionRunner"/> retries that; the retry
    /// then sees the new epoch and throws <see cref="LeadershipLostException"/>, which is never retried).</para>
    /// <para>Also sets <c>idle_in_transaction_session_timeout</c> for the rest of the transaction
    /// (<see cref="LeaderElectionOptions.FencedTransactionIdleTimeout"/>): a fenced transaction left idle by a partitioned
    /// client would otherwise hold back the next leader indefinitely.</para>
    /// <para>The check is made by the database, not by <see cref="Leadership.Lost"/>: a fence passes while no newer leader
    /// exists, even after this instance noticed its loss (no newer epoch can commit before this transaction ends).</para>
    /// </remarks>
    /// <param name="transaction">An open transaction on the database the election uses.</param>
    /// <param name="leadership">The leadership whose epoch the transaction's writes depend on.</param>
    /// <param name="cancellationToken">Cancels the check (the transaction is then aborted).</param>
    /// <returns>A task that completes when the transaction is fenced.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="InvalidOperationException">The transaction is completed.</exception>
    /// <exception cref="LeadershipLostException">A newer leader exists (or the election's row is missing): roll back.</exception>
    public static async Task FenceAsync(this NpgsqlTransaction transaction, Leadership leadership, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        ArgumentNullException.ThrowIfNull(leadership);
        var connection = transaction.Connection ?? throw new InvalidOperationException("The transaction is completed: fence an open transaction.");
        var batch = new NpgsqlBatch(connection, transaction);
        await using (batch.ConfigureAwait(false))
        {
            if (leadership.FencedTransactionIdleTimeout is { } idle)
            {
                batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT set_config('idle_in_transaction_session_timeout', $1, true)")
                {
                    Parameters = { new() { Value = LeaderSql.Milliseconds(idle) } },
                });
            }

            batch.BatchCommands.Add(new NpgsqlBatchCommand(LeaderSql.Fence) { Parameters = { new() { Value = leadership.Name } } });
            long? current = null;
            var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                if (leadership.FencedTransactionIdleTimeout is not null)
                {
                    await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                }

                if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    current = reader.GetInt64(0);
                }
            }

            if (current != leadership.Epoch)
            {
                throw new LeadershipLostException(leadership.Name, leadership.Epoch, current);
            }
        }
    }
}
