namespace RowLock;

/// <summary>
/// The connection was lost while COMMIT was in flight: the transaction may or may not have committed.
/// RowLock never retries this blindly, because running the unit of work again could apply it twice.
/// Check the data (or use an idempotency key) before deciding to run it again.
/// </summary>
public sealed class CommitOutcomeUnknownException : RowLockException
{
    /// <summary>Creates the exception with the failure seen while committing.</summary>
    public CommitOutcomeUnknownException(Exception innerException)
        : base("The connection was lost while COMMIT was in flight, so whether the transaction committed is unknown. It was not retried; check the data before running the unit of work again.",
            (innerException as Npgsql.PostgresException)?.SqlState, innerException)
    {
    }

    /// <summary>False: running the unit of work again could apply it twice. Check the data first.</summary>
    public override bool IsTransient => false;
}
