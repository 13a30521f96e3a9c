using Npgsql;

namespace RowLock;

/// <summary>
/// A write given <c>expectedRows</c> (<see cref="FinalWriteTransactionExtensions.DeferUntilCommit"/>,
/// <see cref="FinalWriteTransactionExtensions.ExecuteAndCommitAsync"/>) affected another number of rows. The server found
/// it before COMMIT and skipped COMMIT: nothing of the transaction was committed. Typical cause: an optimistic version
/// check (<c>WHERE id = @id AND version = @version</c>) that another writer won. <see cref="TransactionRunner"/> retries it
/// when <see cref="RowLockRetryStrategyOptions.RetryOnUnexpectedRowCount"/> is set.
/// </summary>
public sealed class UnexpectedRowCountException : RowLockException
{
    /// <summary>Creates the exception for <paramref name="sql"/>, which affected <paramref name="actualRows"/> rows instead of <paramref name="expectedRows"/>.</summary>
    /// <param name="sql">The write's SQL as the caller passed it.</param>
    /// <param name="expectedRows">The rows it had to affect.</param>
    /// <param name="actualRows">The rows it affected (and that were rolled back).</param>
    /// <param name="innerException">The server's error that carried the mismatch, or null.</param>
    public UnexpectedRowCountException(string sql, int expectedRows, long actualRows, PostgresException? innerException)
        : base(
            $"A write expected to affect {expectedRows} row(s) affected {actualRows}; the server skipped COMMIT, so nothing of the transaction was committed. Write: {sql}",
            null,
            innerException)
    {
        Sql = sql;
        ExpectedRows = expectedRows;
        ActualRows = actualRows;
    }

    /// <summary>The write's SQL as the caller passed it.</summary>
    public string Sql { get; }

    /// <summary>The rows the write had to affect.</summary>
    public int ExpectedRows { get; }

    /// <summary>The rows it affected before the transaction was rolled back.</summary>
    public long ActualRows { get; }

    /// <summary>True: another writer changed the rows in between; running the whole unit of work again may succeed.</summary>
    public override bool IsTransient => true;
}
