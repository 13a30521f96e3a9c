using Npgsql;

namespace RowLock;

/// <summary>
/// The runner had no usable connection before COMMIT was sent, so nothing was committed and the unit of work can be
/// retried on a fresh connection: no connection could be opened (no reachable primary during a failover, an exhausted
/// pool), the connection broke during the work (a partition ended by <c>Command Timeout</c>), or it broke and the work
/// caught that error and returned. Transient: <see cref="RowLockPredicates.IsConnectionLoss"/> matches it. The error
/// that broke or refused the connection, when there is one, is the inner exception.
/// </summary>
internal sealed class ConnectionLostBeforeCommitException(string message, Exception? breakReason) : NpgsqlException(message, breakReason)
{
    /// <summary>The work caught the error that broke its connection and returned.</summary>
    public static ConnectionLostBeforeCommitException Swallowed(Exception? breakReason) => new(
        "The runner's connection was lost during the unit of work, and the work caught that error and returned. COMMIT was never sent, so nothing was committed; " +
        "the unit of work can be retried on a new connection. Let connection errors propagate out of the work.",
        breakReason);

    /// <summary>The data source gave no connection (nothing was sent).</summary>
    public static ConnectionLostBeforeCommitException CannotOpen(Exception reason) => new(
        "The runner could not open a connection (" + reason.Message + "). Nothing was sent, so the unit of work can be retried; during a failover, " +
        "opening fails until the promoted server accepts writes and Npgsql re-checks it (Host Recheck Seconds).",
        reason);

    /// <summary>A statement of the work failed and Npgsql broke the connection (e.g. no answer within Command Timeout).</summary>
    public static ConnectionLostBeforeCommitException BrokeDuringWork(Exception reason) => new(
        "The runner's connection broke during the unit of work (" + reason.Message + "), before COMMIT was sent, so nothing was committed; " +
        "the unit of work can be retried on a new connection.",
        reason);

    /// <inheritdoc/>
    public override bool IsTransient => true;
}
