using System.Diagnostics;
using Npgsql;

namespace RowLock.TestServer;

/// <summary>
/// A throwaway cluster in a fresh temp folder on a free 127.0.0.1 port, trust auth for user <c>rowlock</c>.
/// As root the server binaries run as the <c>postgres</c> user. A detached watchdog stops the cluster and
/// deletes its folder when this process dies without disposing it (crash, kill, Ctrl+C).
/// </summary>
internal sealed class LocalClusterServer : PostgresServer
{
    private const string User = "rowlock";
    private readonly string _binaries;
    private readonly string _root;
    private readonly string _startOptions;
    private readonly Action<string> _log;
    private int _disposed;

    private LocalClusterServer(string binaries, string root, int port, string startOptions, string version, Action<string> log)
        : base(ConnectionStringFor(port), PostgresServerKind.LocalCluster, $"throwaway PostgreSQL {version} cluster on 127.0.0.1:{port} in {root}")
    {
        _binaries = binaries;
        _root = root;
        _startOptions = startOptions;
        _log = log;
        AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
    }

    private string DataDirectory => Path.Combine(_root, "data");

    private static bool IsRoot => LocalMachine.IsRoot;

    public override bool CanRestart => true;

    public static async Task<PostgresServer> StartAsync(string binaries, bool fastUnsafe, Action<string> log, CancellationToken cancellationToken)
    {
        var root = Path.Combine(Path.GetTempPath(), "rowlock-pg-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(root);
        StartWatchdog(binaries, root);
        try
        {
            if (IsRoot)
            {
                await RunAsync("chown", ["postgres:postgres", root], asPostgres: false, cancellationToken).ConfigureAwait(false);
            }

            var data = Path.Combine(root, "data");
            await RunAsync(Path.Combine(binaries, "initdb"),
                ["-D", data, "-U", User, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"], IsRoot, cancellationToken).ConfigureAwait(false);

            // A port taken between probing and binding makes pg_ctl fail; try a few.
            for (var attempt = 1; ; attempt++)
            {
                var port = LocalMachine.FreePort();
                var settings = $"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB";
                if (fastUnsafe)
                {
                    settings += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c deadlock_timeout=100ms";
                }

                try
                {
                    await PgCtlAsync(binaries, root, ["start", "-w", "-t", "60", "-o", settings], cancellationToken).ConfigureAwait(false);
                }
                catch (InvalidOperationException) when (attempt < 3)
                {
                    continue;
                }

                string version;
                await using (var connection = new NpgsqlConnection(ConnectionStringFor(port)))
                {
                    await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
                    version = connection.PostgreSqlVersion.ToString();
                }

                return new LocalClusterServer(binaries, root, port, settings, version, log);
            }
        }
        catch
        {
            await StopAndRemoveAsync(binaries, root).ConfigureAwait(false);
            throw;
        }
    }

    public override async Task RestartAsync(TimeSpan downtime, CancellationToken cancellationToken = default)
    {
        await PgCtlAsync(_binaries, _root, ["stop", "-w", "-m", "fast"], cancellationToken).ConfigureAwait(false);
        await Task.Delay(downtime, cancellationToken).ConfigureAwait(false);
        await PgCtlAsync(_binaries, _root, ["start", "-w", "-t", "60", "-o", _startOptions], cancellationToken).ConfigureAwait(false);
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        NpgsqlConnection.ClearAllPools();
        await StopAndRemoveAsync(_binaries, _root).ConfigureAwait(false);
        _log($"Stopped and removed {_root}.");
    }

    private void OnProcessExit(object? sender, EventArgs e) => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private static string ConnectionStringFor(int port) => new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1",
        Port = port,
        Username = User,
        Database = "postgres",
        Timeout = 10,
    }.ConnectionString;

    private static async Task StopAndRemoveAsync(string binaries, string root)
    {
        try
        {
            if (File.Exists(Path.Combine(root, "data", "postmaster.pid")))
            {
                await PgCtlAsync(binaries, root, ["stop", "-w", "-m", "immediate"], CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (InvalidOperationException)
        {
            // Already stopped: nothing to do but remove the folder.
        }

        try
        {
            Directory.Delete(root, recursive: true);
        }
        catch (IOException)
        {
            // The watchdog removes whatever is left once this process is gone.
        }
    }

    private static Task PgCtlAsync(string binaries, string root, string[] arguments, CancellationToken cancellationToken)
        => RunAsync(Path.Combine(binaries, "pg_ctl"), ["-D", Path.Combine(root, "data"), "-l", Path.Combine(root, "server.log"), .. arguments], IsRoot, cancellationToken);

    private static async Task RunAsync(string program, string[] arguments, bool asPostgres, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(asPostgres ? "runuser" : program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (asPostgres)
        {
            foreach (var a in (string[])["-u", "postgres", "--", program])
            {
                start.ArgumentList.Add(a);
            }
        }

        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {program}.");
        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{Path.GetFileName(program)} {string.Join(' ', arguments)} exited with {process.ExitCode}: {await error.ConfigureAwait(false)}{await output.ConfigureAwait(false)}");
        }
    }

    private static void StartWatchdog(string binaries, string root)
    {
        var pgCtl = Path.Combine(binaries, "pg_ctl");
        var stop = IsRoot ? $"runuser -u postgres -- '{pgCtl}'" : $"'{pgCtl}'";
        Watchdog.Start($"if [ -f '{root}/data/postmaster.pid' ]; then {stop} -D '{root}/data' -m immediate -w stop; fi; rm -rf '{root}'");
    }
}
