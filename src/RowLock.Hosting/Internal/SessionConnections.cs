using Npgsql;

namespace RowLock.Hosting.Internal;

/// <summary>Ends the life of a connection that may hold the election's lock, so the lock never goes back to the pool with it.</summary>
internal static class SessionConnections
{
    /// <summary>A command timeout in whole seconds (at least 1) for <paramref name="value"/>.</summary>
    public static int Seconds(TimeSpan value) => Math.Max(1, (int)Math.Ceiling(value.TotalSeconds));

    /// <summary>
    /// Drops every session lock and setting of a connection before it goes back to the pool; if that fails, the session is
    /// ended instead (<see cref="DiscardAsync"/>).
    /// </summary>
    public static async Task ResetOrDiscardAsync(NpgsqlDataSource dataSource, NpgsqlConnection connection, TimeSpan timeout)
    {
        if (connection.FullState != System.Data.ConnectionState.Open)
        {
            return;
        }

        try
        {
            var reset = new NpgsqlCommand("SELECT pg_advisory_unlock_all(); RESET ALL", connection) { CommandTimeout = Seconds(timeout) };
            await using (reset.ConfigureAwait(false))
            {
                await reset.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException or TimeoutException)
        {
            await DiscardAsync(dataSource, connection).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Ends the connection's session (<c>pg_terminate_backend(pg_backend_pid())</c>: the server drops its locks and Npgsql
    /// does not pool a broken connection). If even that fails, the data source's pool is cleared, which closes this
    /// connection instead of pooling it when it comes back.
    /// </summary>
    public static async Task DiscardAsync(NpgsqlDataSource dataSource, NpgsqlConnection connection)
    {
        if (connection.FullState == System.Data.ConnectionState.Open)
        {
            try
            {
                var terminate = new NpgsqlCommand("SELECT pg_terminate_backend(pg_backend_pid())", connection) { CommandTimeout = 2 };
                await using (terminate.ConfigureAwait(false))
                {
                    await terminate.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException or TimeoutException)
            {
                // Expected: the server ends the session with a FATAL error, which breaks the connection.
            }
        }

        if (connection.FullState == System.Data.ConnectionState.Open)
        {
            dataSource.Clear();
        }
    }
}
