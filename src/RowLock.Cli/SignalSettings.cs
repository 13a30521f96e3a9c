using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace RowLock.Cli;

/// <summary>Options of <c>rowlock cancel</c> and <c>rowlock terminate</c>.</summary>
internal sealed class SignalSettings : ConnectionSettings
{
    [CommandArgument(0, "<PID>")]
    [Description("The process id of the root blocker (as rowlock locks prints it).")]
    public int Pid { get; init; }

    [CommandOption("--force")]
    [Description("Act even when PID is not a root blocker in a fresh snapshot.")]
    public bool Force { get; init; }

    [CommandOption("-y|--yes")]
    [Description("Do not ask for confirmation.")]
    public bool Yes { get; init; }

    public override ValidationResult Validate()
    {
        var connection = base.Validate();
        if (!connection.Successful)
        {
            return connection;
        }

        return Pid <= 0 ? ValidationResult.Error("PID must be a positive process id.") : ValidationResult.Success();
    }
}
