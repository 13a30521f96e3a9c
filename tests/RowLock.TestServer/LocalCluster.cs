using Npgsql;

namespace RowLock.TestServer;

/// <summary>
/// One PostgreSQL data directory under a throwaway root folder, driven with the local binaries (initdb, pg_ctl,
/// pg_basebackup), as the <c>postgres</c> user when this process is root. Several clusters may share a root: the
/// root's watchdog stops every one of them and deletes the root when this process dies without cleaning up.
/// </summary>
internal sealed class LocalCluster
{
    public const string User = "rowlock";

    private readonly string _binaries;
    private readonly string _root;
    private readonly string _name;

    public LocalCluster(string binaries, string root, string name)
    {
        _binaries = binaries;
        _root = root;
        _name = name;
    }

    private static bool IsRoot => LocalMachine.IsRoot;

    public string DataDirectory => Path.Combine(_root, _name);

    public string LogFile => Path.Combine(_root, _name + ".log");

    /// <summary>The port it was last started on; 0 before the first start.</summary>
    public int Port { get; private set; }

    /// <summary>The server options of the last start, reused by <see cref="StartAgainAsync"/>.</summary>
    public string StartOptions { get; private set; } = "";

    public bool IsRunning => File.Exists(Path.Combine(DataDirectory, "postmaster.pid"));

    public string ConnectionString => ConnectionStringFor(Port);

    public static string ConnectionStringFor(int port) => new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1",
        Port = port,
        Username = User,
        Database = "postgres",
        Timeout = 10,
    }.ConnectionString;

    /// <summary>A fresh temp folder owned by the server user, with a watchdog that stops every cluster in it and deletes it once this process is gone.</summary>
    public static async Task<string> CreateRootAsync(string binaries, string prefix, CancellationToken cancellationToken)
    {
        var root = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(root);
        var pgCtl = Path.Combine(binaries, "pg_ctl");
        var stop = IsRoot ? $"runuser -u postgres -- '{pgCtl}'" : $"'{pgCtl}'";
        Watchdog.Start($"for d in '{root}'/*/; do if [ -f \"$d/postmaster.pid\" ]; then {stop} -D \"$d\" -m immediate -w stop; fi; done; rm -rf '{root}'");
        if (IsRoot)
        {
            await LocalCommand.RunAsync("chown", ["postgres:postgres", root], asPostgres: false, cancellationToken).ConfigureAwait(false);
        }

        return root;
    }

    /// <summary>Stops every cluster under <paramref name="root"/> at once (immediate mode) and deletes the folder.</summary>
    public static async Task RemoveRootAsync(string binaries, string root)
    {
        if (Directory.Exists(root))
        {
            foreach (var data in Directory.GetDirectories(root))
            {
                await new LocalCluster(binaries, root, Path.GetFileName(data)).StopQuietlyAsync().ConfigureAwait(false);
            }
        }

        try
        {
            Directory.Delete(root, recursive: true);
        }
        catch (Exception e) when (e is IOException or DirectoryNotFoundException)
        {
            // The watchdog removes whatever is left once this process is gone.
        }
    }

    public Task InitAsync(CancellationToken cancellationToken) =>
        LocalCommand.RunAsync(Path.Combine(_binaries, "initdb"),
            ["-D", DataDirectory, "-U", User, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"], IsRoot, cancellationToken);

    /// <summary>A copy of a running primary made with pg_basebackup, configured as its streaming standby (<c>-R</c>).</summary>
    public Task BaseBackupFromAsync(int primaryPort, CancellationToken cancellationToken) =>
        LocalCommand.RunAsync(Path.Combine(_binaries, "pg_basebackup"),
            ["-h", "127.0.0.1", "-p", primaryPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", User, "-D", DataDirectory, "-R", "-X", "stream", "--no-sync", "-c", "fast"],
            IsRoot, cancellationToken);

    /// <summary>Starts on <paramref name="port"/>, or on a free port (a few tries: a port may be taken between probing and binding).</summary>
    public async Task StartAsync(string settings, int? port, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var chosen = port ?? LocalMachine.FreePort();
            var options = $"-p {chosen} -k {_root} -c listen_addresses=127.0.0.1 {settings}";
            try
            {
                await PgCtlAsync(["start", "-w", "-t", "60", "-o", options], cancellationToken).ConfigureAwait(false);
            }
            catch (InvalidOperationException) when (port is null && attempt < 3)
            {
                continue;
            }

            Port = chosen;
            StartOptions = options;
            return;
        }
    }

    public Task StartAgainAsync(CancellationToken cancellationToken) =>
        PgCtlAsync(["start", "-w", "-t", "60", "-o", StartOptions], cancellationToken);

    /// <param name="mode">pg_ctl's shutdown mode: <c>fast</c> (clean), <c>immediate</c> (like a crash: no checkpoint, clients cut off).</param>
    /// <param name="cancellationToken">Cancels waiting for pg_ctl.</param>
    public Task StopAsync(string mode, CancellationToken cancellationToken) =>
        PgCtlAsync(["stop", "-w", "-m", mode], cancellationToken);

    /// <summary>Ends standby mode; waits until the server accepts writes.</summary>
    public Task PromoteAsync(CancellationToken cancellationToken) =>
        PgCtlAsync(["promote", "-w", "-t", "60"], cancellationToken);

    /// <summary>Stops it (immediate) if it runs and deletes its data directory, so that the name can be reused.</summary>
    public async Task DeleteAsync()
    {
        await StopQuietlyAsync().ConfigureAwait(false);
        if (Directory.Exists(DataDirectory))
        {
            // The files belong to the server user; root may delete them.
            Directory.Delete(DataDirectory, recursive: true);
        }
    }

    public async Task StopQuietlyAsync()
    {
        try
        {
            if (IsRunning)
            {
                await StopAsync("immediate", CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (InvalidOperationException)
        {
            // Already stopped.
        }
    }

    private Task PgCtlAsync(string[] arguments, CancellationToken cancellationToken) =>
        LocalCommand.RunAsync(Path.Combine(_binaries, "pg_ctl"), ["-D", DataDirectory, "-l", LogFile, .. arguments], IsRoot, cancellationToken);
}
