using Npgsql;

namespace RowLock;

/// <summary>
/// The runner's connection broke during the work and the work returned anyway (it caught the error), so COMMIT was
/// never sent and the server has rolled the transaction back. Transient: <see cref="RowLockPredicates.IsConnectionLoss"/>
/// matches it, so the unit of work is retried on a fresh connection. The error that broke the connection, when Npgsql
/// kept it, is the inner exception.
/// </summary>
internal sealed class ConnectionLostBeforeCommitException(Exception? breakReason) : NpgsqlException(
    "The runner's connection was lost during the unit of work, and the work caught that error and returned. COMMIT was never sent, so nothing was committed; " +
    "the unit of work can be retried on a new connection. Let connection errors propagate out of the work.",
    breakReason)
{
    /// <inheritdoc/>
    public override bool IsTransient => true;
}
