using System.Data;
using Npgsql;

namespace RowLock.Internal;

/// <summary>Ends the life of a connection that may hold a lock, so that the lock can never go back to the pool with it.</summary>
internal static class LockConnection
{
    /// <summary>
    /// Runs <paramref name="release"/> (unlock, roll back). If it fails, makes sure the connection is closed instead of
    /// pooled when it is disposed (see <see cref="DiscardAsync"/>). Returns the failure, or null.
    /// </summary>
    public static async Task<Exception?> ReleaseOrDiscardAsync(NpgsqlDataSource? dataSource, NpgsqlConnection connection, Func<Task> release)
    {
        try
        {
            await release().ConfigureAwait(false);
            return null;
        }
        catch (Exception e) when (IsReleaseFailure(e))
        {
            await DiscardAsync(dataSource, connection).ConfigureAwait(false);
            return e;
        }
    }

    /// <summary>The failures of an unlock or rollback after which the connection must not go back to the pool.</summary>
    public static bool IsReleaseFailure(Exception e) => e is NpgsqlException or InvalidOperationException or IOException;

    /// <summary>
    /// Makes sure this connection's session, and every lock it holds, ends instead of going back to the pool.
    /// A broken connection is never pooled and its session is gone already. An open one ends its own session
    /// (<c>pg_terminate_backend(pg_backend_pid())</c>: the server drops its locks, Npgsql sees the connection break and
    /// does not pool it). If even that fails, the data source's pool is cleared: Npgsql has no way to discard one pooled
    /// connection (<c>NpgsqlConnection.ClearPool</c> does nothing for a data source's connections), and a cleared pool
    /// closes every connection that was open at the time when it comes back, this one included.
    /// </summary>
    public static async Task DiscardAsync(NpgsqlDataSource? dataSource, NpgsqlConnection connection)
    {
        if (connection.FullState == ConnectionState.Open)
        {
            try
            {
                var terminate = new NpgsqlCommand("SELECT pg_terminate_backend(pg_backend_pid())", connection);
                await using (terminate.ConfigureAwait(false))
                {
                    await terminate.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException)
            {
                // Expected: the server ends the session with a FATAL error (57P01), which breaks the connection.
            }
        }

        if (connection.FullState == ConnectionState.Open)
        {
            // Without the data source (a connection cloned from the caller's), clear the pool the connection belongs to.
            if (dataSource is not null)
            {
                dataSource.Clear();
            }
            else
            {
                NpgsqlConnection.ClearPool(connection);
            }
        }
    }
}
