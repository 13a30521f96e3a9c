using Npgsql;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// Named real sessions (one unpooled connection each, Application Name = the name) for staging lock incidents: run a
/// statement, or start one that must end up waiting on a lock (confirmed in pg_stat_activity before returning).
/// Disposing terminates every session.
/// </summary>
public sealed class LockSessions(string connectionString, NpgsqlDataSource admin) : IAsyncDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly Dictionary<string, NpgsqlConnection> _sessions = [];
    private readonly List<Task> _waits = [];

    public Dictionary<string, int> Pids { get; } = [];

    public async Task<NpgsqlConnection> OpenAsync(string name, string? connection = null)
    {
        if (_sessions.TryGetValue(name, out var existing))
        {
            return existing;
        }

        var builder = new NpgsqlConnectionStringBuilder(connection ?? connectionString) { ApplicationName = name, Pooling = false, CommandTimeout = 0 };
        var opened = new NpgsqlConnection(builder.ConnectionString);
        await opened.OpenAsync();
        _sessions[name] = opened;
        Pids[name] = opened.ProcessID;
        return opened;
    }

    public async Task RunAsync(string name, string sql)
    {
        var connection = await OpenAsync(name);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>Starts <paramref name="sql"/> and returns once the session waits on a lock (wait_event_type = 'Lock').</summary>
    public async Task<Task> StartWaitingAsync(string name, string sql)
    {
        var connection = await OpenAsync(name);
        var command = new NpgsqlCommand(sql, connection);
        var running = command.ExecuteNonQueryAsync();
        _waits.Add(running);
        await UntilAsync($"SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = {Pids[name]} AND wait_event_type = 'Lock'", $"{name} to wait on a lock");
        return running;
    }

    /// <summary>Starts <paramref name="sql"/> without waiting for anything (e.g. a long parallel query).</summary>
    public async Task<Task> StartAsync(string name, string sql)
    {
        var connection = await OpenAsync(name);
        var command = new NpgsqlCommand(sql, connection);
        var running = command.ExecuteNonQueryAsync();
        _waits.Add(running);
        return running;
    }

    /// <summary>Polls <paramref name="condition"/> (a boolean query) until it is true; fails after a generous minute.</summary>
    public async Task UntilAsync(string condition, string what)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            await using var check = admin.CreateCommand(condition);
            if (await check.ExecuteScalarAsync() is true)
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Gave up waiting for {what} after {Patience}.");
            }

            await Task.Delay(20);
        }
    }

    public ValueTask DisposeAsync() => EndSessionsAsync(admin, Pids, _waits, _sessions.Values, Patience);

    /// <summary>
    /// Ends staged sessions: terminates their backends (so every lock and wait goes away at once), lets the waits they ran
    /// finish (a termination error is expected), and closes their connections. <see cref="StagedLockChain"/> ends its own so.
    /// </summary>
    internal static async ValueTask EndSessionsAsync(NpgsqlDataSource admin, Dictionary<string, int> pids, IEnumerable<Task> waits,
        IEnumerable<NpgsqlConnection> sessions, TimeSpan patience)
    {
        if (pids.Count > 0)
        {
            await using var kill = admin.CreateCommand("SELECT pg_terminate_backend(pid) FROM unnest($1) AS pid");
            kill.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. pids.Values] });
            await kill.ExecuteNonQueryAsync();
        }

        foreach (var wait in waits)
        {
            try
            {
                await wait.WaitAsync(patience);
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                // Terminated on purpose.
            }
        }

        foreach (var connection in sessions)
        {
            await connection.DisposeAsync();
        }
    }
}
