namespace RowLock.Hosting;

/// <summary>
/// The work a leader service runs while this instance leads (register it with
/// <see cref="LeaderServiceCollectionExtensions.AddRowLockLeaderService{TWorker}(Microsoft.Extensions.DependencyInjection.IServiceCollection, string, System.Action{LeaderElectionOptions}?)"/>).
/// Resolved from a new DI scope for each leadership.
/// </summary>
public interface ILeaderWorker
{
    /// <summary>
    /// Runs while this instance leads. <paramref name="cancellationToken"/> is cancelled when the leadership is lost or the
    /// host stops; return (or throw <see cref="OperationCanceledException"/>) then. Returning while still leading resigns,
    /// and the instance joins the election again after <see cref="LeaderElectionOptions.RetryDelay"/>.
    /// </summary>
    /// <param name="leadership">The leadership: fence writes with it (<see cref="LeaderFenceTransactionExtensions.FenceAsync"/>).</param>
    /// <param name="cancellationToken"><see cref="Leadership.Lost"/> linked with the host's stopping token.</param>
    /// <returns>A task that completes when the work is done or cancelled.</returns>
    Task RunAsync(Leadership leadership, CancellationToken cancellationToken);
}
