using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace RowLock.TestServer;

/// <summary>
/// A real PgBouncer in <b>transaction pooling</b> mode in front of a server, on a free 127.0.0.1 port, with a small server
/// pool so that server connections really are shared between clients. As root it runs as the <c>postgres</c> user
/// (PgBouncer refuses root). Stopped on dispose, and by a watchdog if this process dies first.
/// </summary>
public sealed class PgBouncer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _root;

    private PgBouncer(Process process, string root, int port, int poolSize)
    {
        _process = process;
        _root = root;
        Port = port;
        PoolSize = poolSize;
    }

    /// <summary>The port clients connect to.</summary>
    public int Port { get; }

    /// <summary>Server connections per database/user pair.</summary>
    public int PoolSize { get; }

    /// <summary>The pgbouncer executable, or null when it is not installed (Debian: <c>apt-get install pgbouncer</c>).</summary>
    public static string? FindBinary() =>
        new[] { "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer" }
            .Concat((Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Select(d => Path.Combine(d, "pgbouncer")))
            .FirstOrDefault(File.Exists);

    /// <summary>Starts PgBouncer in front of the server that <paramref name="serverConnectionString"/> names.</summary>
    public static async Task<PgBouncer> StartAsync(string serverConnectionString, int poolSize = 4, CancellationToken cancellationToken = default)
    {
        var binary = FindBinary() ?? throw new InvalidOperationException("pgbouncer is not installed (Debian/Ubuntu: apt-get install pgbouncer).");
        var server = new NpgsqlConnectionStringBuilder(serverConnectionString);
        var root = Path.Combine(Path.GetTempPath(), "rowlock-pgbouncer-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(root);
        var port = LocalMachine.FreePort();
        var config = Path.Combine(root, "pgbouncer.ini");
        await File.WriteAllTextAsync(Path.Combine(root, "userlist.txt"), $"\"{server.Username}\" \"{server.Password ?? ""}\"\n", cancellationToken).ConfigureAwait(false);
        await File.WriteAllTextAsync(config, string.Create(CultureInfo.InvariantCulture, $"""
            [databases]
            * = host={server.Host} port={server.Port}

            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {port}
            unix_socket_dir =
            auth_type = trust
            auth_file = {root}/userlist.txt
            pool_mode = transaction
            default_pool_size = {poolSize}
            min_pool_size = 0
            reserve_pool_size = 0
            max_client_conn = 2000
            max_db_connections = {poolSize}
            server_reset_query =
            ignore_startup_parameters = extra_float_digits,options
            logfile = {root}/pgbouncer.log
            pidfile = {root}/pgbouncer.pid
            """), cancellationToken).ConfigureAwait(false);

        var asRoot = LocalMachine.IsRoot;
        if (asRoot)
        {
            using var chown = Process.Start("chown", ["-R", "postgres:postgres", root])!;
            await chown.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }

        var start = new ProcessStartInfo(asRoot ? "runuser" : binary) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in asRoot ? ["-u", "postgres", "--", binary, config] : new[] { config })
        {
            start.ArgumentList.Add(argument);
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start pgbouncer.");
        Watchdog.Start($"if [ -f '{root}/pgbouncer.pid' ]; then kill $(cat '{root}/pgbouncer.pid'); fi; sleep 1; rm -rf '{root}'");
        var bouncer = new PgBouncer(process, root, port, poolSize);
        try
        {
            await WaitUntilListeningAsync(port, process, root, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await bouncer.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return bouncer;
    }

    /// <summary>
    /// The connection string for the same database and user through PgBouncer, with the settings transaction pooling
    /// needs: no reset on close (there is no session to reset) and no automatic preparation.
    /// </summary>
    public string ConnectionStringFor(string databaseConnectionString) => new NpgsqlConnectionStringBuilder(databaseConnectionString)
    {
        Host = "127.0.0.1",
        Port = Port,
        NoResetOnClose = true,
        MaxAutoPrepare = 0,
    }.ConnectionString;

    /// <summary>Stops PgBouncer and removes its folder.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().ConfigureAwait(false);
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // The watchdog removes it once this process is gone.
        }
    }

    private static async Task WaitUntilListeningAsync(int port, Process process, string root, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 100; attempt++)
        {
            if (process.HasExited)
            {
                var log = File.Exists(Path.Combine(root, "pgbouncer.log")) ? await File.ReadAllTextAsync(Path.Combine(root, "pgbouncer.log"), cancellationToken).ConfigureAwait(false) : "";
                throw new InvalidOperationException($"pgbouncer exited with {process.ExitCode}: {await process.StandardError.ReadToEndAsync(cancellationToken).ConfigureAwait(false)} {log}");
            }

            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50, cancellationToken).ConfigureAwait(false);
            }
        }

        throw new TimeoutException("pgbouncer did not start listening within 5 s.");
    }
}
