using Microsoft.Extensions.Logging;

namespace RowLock.Hosting.Internal;

/// <summary>Every leadership change is logged: Information when won or resigned, Warning with the reason when lost.</summary>
internal static partial class LeaderLog
{
    public const string Category = "RowLock.Hosting.LeaderElection";

    [LoggerMessage(900, LogLevel.Information, "Leadership of {LeaderName} acquired by {Instance} with epoch {Epoch} ({Mode} mode)")]
    public static partial void Acquired(ILogger logger, string leaderName, string instance, long epoch, LeaderElectionMode mode);

    [LoggerMessage(901, LogLevel.Warning, "Leadership of {LeaderName} (epoch {Epoch}) lost: {Reason}")]
    public static partial void Lost(ILogger logger, string leaderName, long epoch, string reason, Exception? exception);

    [LoggerMessage(902, LogLevel.Information, "Leadership of {LeaderName} (epoch {Epoch}) resigned")]
    public static partial void Resigned(ILogger logger, string leaderName, long epoch);

    [LoggerMessage(903, LogLevel.Warning, "Leader election for {LeaderName} failed; retrying in {DelayMs} ms")]
    public static partial void AttemptFailed(ILogger logger, string leaderName, long delayMs, Exception exception);

    [LoggerMessage(904, LogLevel.Debug, "Leader election for {LeaderName}: following, waiting for the leader to go")]
    public static partial void Following(ILogger logger, string leaderName);

    [LoggerMessage(905, LogLevel.Warning, "Resigning leadership of {LeaderName} (epoch {Epoch}) failed; it ends with the session or when the lease expires")]
    public static partial void ResignFailed(ILogger logger, string leaderName, long epoch, Exception exception);

    [LoggerMessage(906, LogLevel.Error, "The leader worker of {LeaderName} (epoch {Epoch}) failed; resigning")]
    public static partial void WorkerFailed(ILogger logger, string leaderName, long epoch, Exception exception);

    [LoggerMessage(907, LogLevel.Information, "The leader worker of {LeaderName} (epoch {Epoch}) returned while leading; resigning")]
    public static partial void WorkerReturned(ILogger logger, string leaderName, long epoch);
}
