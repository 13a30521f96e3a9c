using System.Data;
using Npgsql;

namespace RowLock.Internal;

/// <summary>Checks, before anything is sent, that a helper was given a transaction it can lock in.</summary>
internal static class TransactionGuard
{
    public static NpgsqlConnection RequireActive(NpgsqlTransaction transaction, string paramName)
    {
        ArgumentNullException.ThrowIfNull(transaction, paramName);

        NpgsqlConnection? connection;
        try
        {
            connection = transaction.Connection;

            // Npgsql keeps Connection after COMMIT/ROLLBACK; IsolationLevel checks that the transaction is still live.
            _ = transaction.IsolationLevel;
        }
        catch (ObjectDisposedException e)
        {
            throw new InvalidOperationException(
                "The transaction is disposed. Row and advisory locks live until the end of a transaction, so they need one that is still open.", e);
        }
        catch (InvalidOperationException e)
        {
            // Npgsql: "Transaction is already completed".
            throw Completed(e);
        }

        if (connection is null)
        {
            throw Completed(null);
        }

        if (connection.State != ConnectionState.Open)
        {
            throw new InvalidOperationException(
                $"The transaction's connection is {connection.State}, not Open. Locks cannot be taken on it; begin a new transaction on an open connection.");
        }

        return connection;
    }

    /// <summary>True once the transaction is committed, rolled back or disposed.</summary>
    public static bool IsCompleted(NpgsqlTransaction transaction)
    {
        try
        {
            _ = transaction.IsolationLevel;
            return transaction.Connection is null;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }

    private static InvalidOperationException Completed(Exception? inner) => new(
        "The transaction is already committed or rolled back. Row and advisory locks live until the end of a transaction, so they need one that is still open; begin a new transaction.", inner);
}
