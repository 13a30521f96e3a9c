using System.Diagnostics;
using System.Globalization;
using Npgsql;

namespace RowLock.TestServer;

/// <summary>
/// A primary and a synchronous streaming standby, two throwaway clusters from the local binaries on 127.0.0.1, for
/// failover tests. The standby is a <c>pg_basebackup -R</c> copy of the primary and is named in the primary's
/// <c>synchronous_standby_names</c>, so every commit the primary acknowledges is already on the standby.
/// <see cref="FailOverAsync"/> kills the primary (<c>pg_ctl stop -m immediate</c>) and promotes the standby;
/// <see cref="RebuildStandbyAsync"/> makes a new standby of the new primary on the dead one's port, so the
/// <see cref="MultiHostConnectionString"/> stays valid across any number of failovers. Both clusters are removed on
/// dispose, at process exit, and by a watchdog if the process is killed.
/// </summary>
/// <remarks>Durability settings are production ones except <c>fsync=off</c>: a killed server process loses nothing the
/// kernel already has, and these tests kill processes, never the machine.</remarks>
public sealed class ReplicatedPair : IAsyncDisposable
{
    private const string Settings = "-c max_connections=200 -c shared_buffers=32MB -c fsync=off -c deadlock_timeout=100ms " +
                                    "-c wal_level=replica -c max_wal_senders=10 -c hot_standby=on -c wal_receiver_status_interval=1s";

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly string _binaries;
    private readonly string _root;
    private readonly LocalCluster _first;
    private readonly LocalCluster _second;
    private readonly Action<string> _log;
    private LocalCluster _primary;
    private LocalCluster _standby;
    private int _disposed;

    private ReplicatedPair(string binaries, string root, LocalCluster first, LocalCluster second, Action<string> log)
    {
        _binaries = binaries;
        _root = root;
        _first = first;
        _second = second;
        _primary = first;
        _standby = second;
        _log = log;
        AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
    }

    /// <summary>The port of the server that currently accepts writes.</summary>
    public int PrimaryPort => _primary.Port;

    /// <summary>The port of the standby (after a failover, the port where <see cref="RebuildStandbyAsync"/> will put the next one).</summary>
    public int StandbyPort => _standby.Port;

    /// <summary>True while a synchronous standby is streaming from the primary; false after <see cref="FailOverAsync"/> until <see cref="RebuildStandbyAsync"/>.</summary>
    public bool HasStandby { get; private set; }

    /// <summary>How many times <see cref="FailOverAsync"/> promoted a standby.</summary>
    public int Failovers { get; private set; }

    /// <summary>Superuser connection string to the current primary's <c>postgres</c> database.</summary>
    public string PrimaryConnectionString => _primary.ConnectionString;

    /// <summary>Superuser connection string to the standby's <c>postgres</c> database (read-only while it is a standby).</summary>
    public string StandbyConnectionString => _standby.ConnectionString;

    /// <summary>
    /// Both servers, always in the same order, with <c>Target Session Attributes=primary</c>: whichever server is the
    /// primary gets the connections, before and after any failover.
    /// </summary>
    public string MultiHostConnectionString => MultiHostConnectionStringFor("postgres");

    /// <summary>Starts the primary and its synchronous standby. Throws <see cref="InvalidOperationException"/> when no local binaries exist.</summary>
    public static async Task<ReplicatedPair> StartAsync(Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        var binaries = LocalBinaries.Find() ?? throw new InvalidOperationException(
            "A replicated pair needs the PostgreSQL server binaries on this machine (Debian/Ubuntu: apt-get install postgresql; or set ROWLOCK_PG_BIN).");
        var root = await LocalCluster.CreateRootAsync(binaries, "rowlock-pair-", cancellationToken).ConfigureAwait(false);
        try
        {
            var first = new LocalCluster(binaries, root, "node1");
            var second = new LocalCluster(binaries, root, "node2");
            await first.InitAsync(cancellationToken).ConfigureAwait(false);
            await first.StartAsync(Settings, port: null, cancellationToken).ConfigureAwait(false);
            var pair = new ReplicatedPair(binaries, root, first, second, log ?? (_ => { }));
            await pair.AttachStandbyAsync(port: null, cancellationToken).ConfigureAwait(false);
            pair._log($"Replicated pair in {root}: primary 127.0.0.1:{first.Port}, synchronous standby 127.0.0.1:{second.Port}.");
            return pair;
        }
        catch
        {
            await LocalCluster.RemoveRootAsync(binaries, root).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The multi-host connection string (see <see cref="MultiHostConnectionString"/>) to another database.</summary>
    public string MultiHostConnectionStringFor(string database) => new NpgsqlConnectionStringBuilder
    {
        Host = string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{_first.Port},127.0.0.1:{_second.Port}"),
        Username = LocalCluster.User,
        Database = database,
        Timeout = 5,
        TargetSessionAttributes = "primary",
    }.ConnectionString;

    /// <summary>Creates a database on the primary (replicated to the standby) and returns the multi-host connection string to it.</summary>
    public async Task<string> CreateDatabaseAsync(string prefix, CancellationToken cancellationToken = default)
    {
        var name = string.Create(CultureInfo.InvariantCulture, $"rl_{prefix.ToLowerInvariant()}_{Random.Shared.Next():x8}");
        await ExecuteAsync(PrimaryConnectionString, $"CREATE DATABASE \"{name}\"", cancellationToken).ConfigureAwait(false);
        return MultiHostConnectionStringFor(name);
    }

    /// <summary>
    /// Kills the primary the way a crash does (<c>pg_ctl stop -m immediate</c>: every client connection is cut, nothing is
    /// flushed or checkpointed) and promotes the standby, which accepts writes when this returns.
    /// </summary>
    /// <returns>The time from the kill until the promoted server accepted writes.</returns>
    /// <exception cref="InvalidOperationException">There is no standby (call <see cref="RebuildStandbyAsync"/> after a failover).</exception>
    public async Task<TimeSpan> FailOverAsync(CancellationToken cancellationToken = default)
    {
        if (!HasStandby)
        {
            throw new InvalidOperationException("There is no standby to promote: call RebuildStandbyAsync after a failover.");
        }

        var clock = Stopwatch.StartNew();
        await _primary.StopAsync("immediate", cancellationToken).ConfigureAwait(false);
        await _standby.PromoteAsync(cancellationToken).ConfigureAwait(false);
        (_primary, _standby) = (_standby, _primary);
        HasStandby = false;
        Failovers++;

        // The promoted server must not wait for a standby of its own: a copy made before synchronous_standby_names was
        // set on its primary has none, but make sure, or every commit would hang until the next standby attaches.
        if (await ScalarAsync(PrimaryConnectionString, "SHOW synchronous_standby_names", cancellationToken).ConfigureAwait(false) is string names && names.Length > 0)
        {
            await ExecuteAsync(PrimaryConnectionString, "ALTER SYSTEM RESET synchronous_standby_names; SELECT pg_reload_conf()", cancellationToken).ConfigureAwait(false);
        }

        await ExecuteAsync(PrimaryConnectionString, "CREATE TEMP TABLE promoted_and_writable (x int)", cancellationToken).ConfigureAwait(false);
        var elapsed = clock.Elapsed;
        _log($"Failed over: 127.0.0.1:{_standby.Port} killed, 127.0.0.1:{_primary.Port} promoted in {elapsed.TotalMilliseconds:F0} ms.");
        return elapsed;
    }

    /// <summary>
    /// After a failover: a fresh standby of the current primary (pg_basebackup) on the killed server's port, named
    /// synchronous again. Does nothing when a standby is already attached.
    /// </summary>
    public async Task RebuildStandbyAsync(CancellationToken cancellationToken = default)
    {
        if (HasStandby)
        {
            return;
        }

        await AttachStandbyAsync(_standby.Port, cancellationToken).ConfigureAwait(false);
        _log($"Rebuilt the standby on 127.0.0.1:{_standby.Port} from the primary on 127.0.0.1:{_primary.Port}.");
    }

    /// <summary>Stops both servers and removes their folder.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        await LocalCluster.RemoveRootAsync(_binaries, _root).ConfigureAwait(false);
        _log($"Stopped and removed the replicated pair in {_root}.");
    }

    private void OnProcessExit(object? sender, EventArgs e) => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private async Task AttachStandbyAsync(int? port, CancellationToken cancellationToken)
    {
        await _standby.DeleteAsync().ConfigureAwait(false);
        await _standby.BaseBackupFromAsync(_primary.Port, cancellationToken).ConfigureAwait(false);
        await _standby.StartAsync(Settings, port, cancellationToken).ConfigureAwait(false);

        // Only now, so that the copy the standby was made from does not name a synchronous standby itself.
        await ExecuteAsync(PrimaryConnectionString, "ALTER SYSTEM SET synchronous_standby_names = '*'; SELECT pg_reload_conf()", cancellationToken).ConfigureAwait(false);
        var deadline = Stopwatch.StartNew();
        while (!Equals(await ScalarAsync(PrimaryConnectionString,
                   "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'", cancellationToken).ConfigureAwait(false), 1L))
        {
            if (deadline.Elapsed > Patience)
            {
                throw new TimeoutException($"The standby on 127.0.0.1:{_standby.Port} did not become a streaming synchronous standby within {Patience.TotalSeconds} s; see {_standby.LogFile}.");
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }

        HasStandby = true;
    }

    /// <summary>Servers die and come back on the same ports here: a pooled connection could be a dead one from a previous life.</summary>
    private static NpgsqlConnection Unpooled(string connectionString) =>
        new(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);

    private static async Task ExecuteAsync(string connectionString, string sql, CancellationToken cancellationToken)
    {
        await using var connection = Unpooled(connectionString);
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private static async Task<object?> ScalarAsync(string connectionString, string sql, CancellationToken cancellationToken)
    {
        await using var connection = Unpooled(connectionString);
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
    }
}
