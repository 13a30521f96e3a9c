using Npgsql;

namespace RowLock.Internal;

/// <summary>Ends the life of a connection that may hold a lock, so that the lock can never go back to the pool with it.</summary>
internal static class LockConnection
{
    /// <summary>
    /// Runs <paramref name="release"/> (unlock, roll back). If it fails, the connection's pool is cleared so this connection is
    /// closed instead of pooled (a broken connection's session, and its locks, are gone anyway). Returns the failure, or null.
    /// </summary>
    public static async Task<Exception?> ReleaseOrDiscardAsync(NpgsqlConnection connection, Func<Task> release)
    {
        try
        {
            await release().ConfigureAwait(false);
            return null;
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException)
        {
            NpgsqlConnection.ClearPool(connection);
            return e;
        }
    }
}
