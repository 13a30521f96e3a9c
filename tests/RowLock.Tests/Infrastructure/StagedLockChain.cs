using System.Globalization;
using System.Text.RegularExpressions;
using Npgsql;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// Real sessions (one unpooled connection each, Application Name = the letter) staged into a lock-wait graph:
/// <code>
/// A  holds row 1 of accounts (FOR UPDATE), idle in transaction          root, holds up B C D E
/// └─ B holds advisory "jobs.sync", waits for A's row (transaction id, holding the tuple lock)
///    ├─ C inserted invoice 7 (uncommitted), waits for advisory "jobs.sync"
///    │  └─ D inserts invoice 7, waits for C's transaction id (unique key)
///    └─ E waits for row 1 of accounts (the tuple lock B holds)
/// F  holds the session advisory lock (7, 11), idle                      root, holds up G
/// └─ G waits for advisory (7, 11)
/// </code>
/// Each wait is confirmed with pg_blocking_pids before the next session starts, so the order is fixed.
/// Disposing terminates every session.
/// </summary>
public sealed class StagedLockChain : IAsyncDisposable
{
    public const string AdvisoryName = "jobs.sync";
    public static readonly AdvisoryLockKey PairKey = AdvisoryLockKey.FromInt32Pair(7, 11);

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly string _connectionString;
    private readonly NpgsqlDataSource _admin;
    private readonly Dictionary<string, NpgsqlConnection> _sessions = [];
    private readonly List<Task> _waits = [];

    private StagedLockChain(string connectionString, NpgsqlDataSource admin)
    {
        _connectionString = connectionString;
        _admin = admin;
    }

    /// <summary>Process id of each session, by letter.</summary>
    public Dictionary<string, int> Pids { get; } = [];

    /// <summary>The letter of a pid (for normalising rendered output).</summary>
    public string LetterOf(int pid) => Pids.Single(p => p.Value == pid).Key;

    /// <summary>
    /// Rendered output with the volatile parts fixed: pids become their letters (<c>pid A</c>, node <c>pA</c>),
    /// durations <c>hh:mm:ss</c>, transaction ids <c>X</c>, the database name <c>DB</c>.
    /// </summary>
    public string Normalise(string rendered, string database)
    {
        var text = rendered.Replace(database, "DB", StringComparison.Ordinal);
        text = Regex.Replace(text, @"transaction \d+", "transaction X");
        text = Regex.Replace(text, @"\b\d{2,}:\d{2}:\d{2}\b", "hh:mm:ss");
        text = Regex.Replace(text, @"(?<=\bpid |\bp)(\d+)\b", m => Pids.FirstOrDefault(p => p.Value.ToString(CultureInfo.InvariantCulture) == m.Value).Key ?? "?");
        return text;
    }

    public static async Task<StagedLockChain> StageAsync(DatabaseFixture db)
    {
        await db.ExecuteAsync("""
            DROP TABLE IF EXISTS accounts, invoices;
            CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
            INSERT INTO accounts VALUES (1, 100);
            CREATE TABLE invoices (no int PRIMARY KEY);
            """);
        var chain = new StagedLockChain(db.ConnectionString, db.DataSource);
        try
        {
            var key = AdvisoryLockKey.FromName(AdvisoryName).Value;
            await chain.RunAsync("A", "BEGIN; SELECT balance FROM accounts WHERE id = 1 FOR UPDATE;");
            await chain.RunAsync("B", $"BEGIN; SELECT pg_advisory_xact_lock({key});");
            await chain.WaitAsync("B", "SELECT balance FROM accounts WHERE id = 1 FOR UPDATE", blockedBy: "A");
            await chain.RunAsync("C", "BEGIN; INSERT INTO invoices VALUES (7);");
            await chain.WaitAsync("C", $"SELECT pg_advisory_xact_lock({key})", blockedBy: "B");
            await chain.RunAsync("D", "BEGIN;");
            await chain.WaitAsync("D", "INSERT INTO invoices VALUES (7)", blockedBy: "C");
            await chain.RunAsync("E", "BEGIN;");
            await chain.WaitAsync("E", "SELECT balance FROM accounts WHERE id = 1 FOR UPDATE", blockedBy: "B");
            await chain.RunAsync("F", "SELECT pg_advisory_lock(7, 11);");
            await chain.WaitAsync("G", "SELECT pg_advisory_lock(7, 11)", blockedBy: "F");
            return chain;
        }
        catch
        {
            await chain.DisposeAsync();
            throw;
        }
    }

    private async Task<NpgsqlConnection> SessionAsync(string letter)
    {
        if (_sessions.TryGetValue(letter, out var existing))
        {
            return existing;
        }

        var builder = new NpgsqlConnectionStringBuilder(_connectionString) { ApplicationName = letter, Pooling = false };
        var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        _sessions[letter] = connection;
        Pids[letter] = connection.ProcessID;
        return connection;
    }

    private async Task RunAsync(string letter, string sql)
    {
        var connection = await SessionAsync(letter);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private async Task WaitAsync(string letter, string sql, string blockedBy)
    {
        var connection = await SessionAsync(letter);
        var command = new NpgsqlCommand(sql, connection);
        _waits.Add(command.ExecuteNonQueryAsync());
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            await using var check = _admin.CreateCommand("SELECT $1 = ANY(pg_blocking_pids($2))");
            check.Parameters.Add(new NpgsqlParameter<int> { TypedValue = Pids[blockedBy] });
            check.Parameters.Add(new NpgsqlParameter<int> { TypedValue = Pids[letter] });
            if ((bool)(await check.ExecuteScalarAsync())!)
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{letter} did not start waiting behind {blockedBy} within {Patience}.");
            }

            await Task.Delay(20);
        }
    }

    public ValueTask DisposeAsync() => LockSessions.EndSessionsAsync(_admin, Pids, _waits, _sessions.Values, Patience);
}
