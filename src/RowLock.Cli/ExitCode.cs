namespace RowLock.Cli;

/// <summary>The tool's exit codes, documented in docs/diagnostics.md so scripts and probes can rely on them.</summary>
internal enum ExitCode
{
    /// <summary><c>locks</c>: the snapshot was read and no wait is longer than <c>--fail-if-waiting</c> (or it was not given); <c>cancel</c>/<c>terminate</c>: the signal was sent.</summary>
    Ok = 0,

    /// <summary><c>locks</c>: a wait is longer than <c>--fail-if-waiting</c>; <c>cancel</c>/<c>terminate</c>: nothing was done (refused, declined, or the process was gone).</summary>
    WaitsFoundOrNothingDone = 1,

    /// <summary>Bad usage (unknown option, bad value, no connection string) or the server could not be reached or queried.</summary>
    UsageOrConnectionError = 2,
}
