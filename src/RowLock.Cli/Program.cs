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
    config.UseAssemblyInformationalVersion(); // rowlock --version
    config.UseStrictParsing(); // an unknown option is an error (exit 2), not silently ignored
    config.SetExceptionHandler((e, _) =>
    {
        // Expected errors (bad usage, unreachable server) print one line, no stack trace, and exit 2.
        var exit = e is CliException cli ? cli.ExitCode : ExitCode.UsageOrConnectionError;
        Console.Error.WriteLine("rowlock: " + e.Message);
        return (int)exit;
    });
    config.AddCommand<LocksCommand>("locks")
        .WithDescription("Print who blocks whom in a PostgreSQL database: the lock-wait tree (or a Mermaid graph, or JSON). Exit codes: 0 read (no wait over --fail-if-waiting), 1 a wait over --fail-if-waiting, 2 usage or connection error.")
        .WithExample("locks", "--connection", "\"Host=db;Username=ops;Database=shop\"")
        .WithExample("locks", "--connection", "\"Host=db;Username=ops;Database=shop\"", "--watch", "--name", "jobs.sync")
        .WithExample("locks", "--connection", "\"$ROWLOCK_CONNECTION\"", "--json", "--fail-if-waiting", "30s");
    config.AddCommand<KeyCommand>("key")
        .WithDescription("Print an advisory lock name's key, where it shows up in pg_locks, and the SQL that computes it.")
        .WithExample("key", "jobs.sync");
    config.AddCommand<CancelCommand>("cancel")
        .WithDescription("Cancel the statement of a root blocker (pg_cancel_backend), after showing what it holds and asking. Refuses a pid that is not a root blocker now, unless --force.")
        .WithExample("cancel", "4711", "--connection", "\"Host=db;Username=ops;Database=shop\"");
    config.AddCommand<TerminateCommand>("terminate")
        .WithDescription("End the session of a root blocker (pg_terminate_backend): its transaction rolls back and its locks are freed. Refuses a pid that is not a root blocker now, unless --force.")
        .WithExample("terminate", "4711", "--connection", "\"Host=db;Username=ops;Database=shop\"", "--yes");
});
return await app.RunAsync(args, stop.Token).ConfigureAwait(false);
