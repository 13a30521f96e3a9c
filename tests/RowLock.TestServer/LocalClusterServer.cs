using Npgsql;

namespace RowLock.TestServer;

/// <summary>
/// A throwaway cluster in a fresh temp folder on a free 127.0.0.1 port, trust auth for user <c>rowlock</c>.
/// As root the server binaries run as the <c>postgres</c> user. A detached watchdog stops the cluster and
/// deletes its folder when this process dies without disposing it (crash, kill, Ctrl+C).
/// </summary>
internal sealed class LocalClusterServer : PostgresServer
{
    private readonly string _binaries;
    private readonly string _root;
    private readonly LocalCluster _cluster;
    private readonly Action<string> _log;
    private int _disposed;

    private LocalClusterServer(string binaries, string root, LocalCluster cluster, string version, Action<string> log)
        : base(cluster.ConnectionString, PostgresServerKind.LocalCluster, $"throwaway PostgreSQL {version} cluster on 127.0.0.1:{cluster.Port} in {root}")
    {
        _binaries = binaries;
        _root = root;
        _cluster = cluster;
        _log = log;
        AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
    }

    public override bool CanRestart => true;

    public static async Task<PostgresServer> StartAsync(string binaries, bool fastUnsafe, Action<string> log, CancellationToken cancellationToken)
    {
        var root = await LocalCluster.CreateRootAsync(binaries, "rowlock-pg-", cancellationToken).ConfigureAwait(false);
        try
        {
            var cluster = new LocalCluster(binaries, root, "data");
            await cluster.InitAsync(cancellationToken).ConfigureAwait(false);
            var settings = "-c max_connections=300 -c shared_buffers=128MB -c max_prepared_transactions=20";
            if (fastUnsafe)
            {
                settings += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c deadlock_timeout=100ms";
            }

            await cluster.StartAsync(settings, port: null, cancellationToken).ConfigureAwait(false);
            string version;
            await using (var connection = new NpgsqlConnection(cluster.ConnectionString))
            {
                await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
                version = connection.PostgreSqlVersion.ToString();
            }

            return new LocalClusterServer(binaries, root, cluster, version, log);
        }
        catch
        {
            await LocalCluster.RemoveRootAsync(binaries, root).ConfigureAwait(false);
            throw;
        }
    }

    public override async Task RestartAsync(TimeSpan downtime, CancellationToken cancellationToken = default)
    {
        await _cluster.StopAsync("fast", cancellationToken).ConfigureAwait(false);
        await Task.Delay(downtime, cancellationToken).ConfigureAwait(false);
        await _cluster.StartAgainAsync(cancellationToken).ConfigureAwait(false);
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        NpgsqlConnection.ClearAllPools();
        await LocalCluster.RemoveRootAsync(_binaries, _root).ConfigureAwait(false);
        _log($"Stopped and removed {_root}.");
    }

    private void OnProcessExit(object? sender, EventArgs e) => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
