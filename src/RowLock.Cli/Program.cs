using System.Reflection;
using System.Text;
using RowLock.Cli;
using Spectre.Console.Cli;

Console.OutputEncoding = Encoding.UTF8;
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    // The first Ctrl+C ends --watch cleanly; the process exits through Main.
    e.Cancel = true;
    stop.Cancel();
};

var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("rowlock");
    // `rowlock --version` prints the package version (the informational version without its +commit suffix).
    config.SetApplicationVersion(typeof(LocksCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "unknown");
    config.AddCommand<LocksCommand>("locks")
        .WithDescription("Print who blocks whom in a PostgreSQL database: the lock-wait tree (or a Mermaid graph).")
        .WithExample("locks", "--connection", "Host=db;Username=ops;Database=shop")
        .WithExample("locks", "--connection", "Host=db;Username=ops;Database=shop", "--watch", "--name", "jobs.sync");
    config.AddCommand<KeyCommand>("key")
        .WithDescription("Print an advisory lock name's key, where it shows up in pg_locks, and the SQL that computes it.")
        .WithExample("key", "jobs.sync");
});
return await app.RunAsync(args, stop.Token).ConfigureAwait(false);
