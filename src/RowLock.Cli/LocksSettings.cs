using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace RowLock.Cli;

/// <summary>Options of <c>rowlock locks</c>.</summary>
internal sealed class LocksSettings : ConnectionSettings
{
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

    [CommandOption("--json")]
    [Description("Print the snapshot as JSON (shape: docs/diagnostics.md) instead of the text tree.")]
    public bool Json { get; init; }

    [CommandOption("--fail-if-waiting <DURATION>")]
    [Description("Exit 1 when a session has waited on a lock longer than DURATION (30s, 500ms, 2m, 1h); for cron and probes.")]
    public string? FailIfWaiting { get; init; }

    [CommandOption("-n|--name <NAME>")]
    [Description("An advisory lock name your application uses (repeatable): its key is shown by name.")]
    public string[] Names { get; init; } = [];

    [CommandOption("-s|--semaphore <NAME:COUNT>")]
    [Description("A semaphore your application uses, as NAME:COUNT (repeatable): shown as one line (holders, waiters), its keys by name.")]
    public string[] Semaphores { get; init; } = [];

    [CommandOption("--all-databases")]
    [Description("Include sessions of every database on the server.")]
    public bool AllDatabases { get; init; }

    /// <summary>The parsed <see cref="FailIfWaiting"/>, or null when not given.</summary>
    public TimeSpan? FailThreshold => FailIfWaiting is null ? null : Durations.TryParse(FailIfWaiting, out var d) ? d : null;

    public override ValidationResult Validate()
    {
        var connection = base.Validate();
        if (!connection.Successful)
        {
            return connection;
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

        if (Mermaid && Json)
        {
            return ValidationResult.Error("Give --mermaid or --json, not both.");
        }

        if (FailIfWaiting is not null && !Durations.TryParse(FailIfWaiting, out _))
        {
            return ValidationResult.Error($"--fail-if-waiting: '{FailIfWaiting}' is not a duration; write e.g. 30s, 500ms, 2m or 1h.");
        }

        return ValidationResult.Success();
    }
}
