namespace RowLock.Cli;

/// <summary>An error the tool expected: its message says it all (no stack trace), and it carries the exit code.</summary>
internal sealed class CliException(string message, ExitCode exitCode = ExitCode.UsageOrConnectionError) : Exception(message)
{
    public ExitCode ExitCode { get; } = exitCode;
}
