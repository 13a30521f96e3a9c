using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace RowLock.Cli;

/// <summary>Options of <c>rowlock locks</c>.</summary>
internal sealed class LocksSettings : CommandSettings
{
    public const string ConnectionVariable = "ROWLOCK_CONNECTION";

    [CommandOption("-c|--connection <CONNECTION_STRING>")]
    [Description("Npgsql connection string of the database to inspect (default: $ROWLOCK_CONNECTION). Any role works; other roles' queries need pg_read_all_stats.")]
    public string? Connection { get; init; }

    [CommandOption("-w|--watch")]
    [Description("Refresh until Ctrl+C.")]
    public bool Watch { get; init; }

    [CommandOption("-i|--interval <SECONDS>")]
    [Description("Seconds between refreshes with --watch (default 2).")]
    [DefaultValue(2.0)]
    public double Interval { get; init; } = 2.0;

    [CommandOption("--count <N>")]
    [Description("With --watch, stop after N refreshes.")]
    public int? Count { get; init; }

    [CommandOption("-m|--mermaid")]
    [Description("Print a Mermaid flowchart instead of the text tree.")]
    public bool Mermaid { get; init; }

    [CommandOption("-n|--name <NAME>")]
    [Description("An advisory lock name your application uses (repeatable): its key is shown by name.")]
    public string[] Names { get; init; } = [];

    [CommandOption("-s|--semaphore <NAME:COUNT>")]
    [Description("A semaphore your application uses, as NAME:COUNT (repeatable): shown as one line (holders, waiters), its keys by name.")]
    public string[] Semaphores { get; init; } = [];

    [CommandOption("--all-databases")]
    [Description("Include sessions of every database on the server.")]
    public bool AllDatabases { get; init; }

    public string? ResolvedConnection => string.IsNullOrWhiteSpace(Connection) ? Environment.GetEnvironmentVariable(ConnectionVariable) : Connection;

    public override ValidationResult Validate()
    {
        if (string.IsNullOrWhiteSpace(ResolvedConnection))
        {
            return ValidationResult.Error($"Give a connection string with --connection or ${ConnectionVariable}.");
        }

        if (Interval <= 0 || double.IsNaN(Interval))
        {
            return ValidationResult.Error("--interval must be a positive number of seconds.");
        }

        if (Count is <= 0)
        {
            return ValidationResult.Error("--count must be at least 1.");
        }

        if (Names.Any(string.IsNullOrEmpty))
        {
            return ValidationResult.Error("--name cannot be empty.");
        }

        return ValidationResult.Success();
    }
}
