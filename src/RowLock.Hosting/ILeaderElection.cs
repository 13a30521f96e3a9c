namespace RowLock.Hosting;

/// <summary>An election for one name: code that is not a hosted service waits for leadership through this.</summary>
public interface ILeaderElection
{
    /// <summary>The election's name (its advisory lock key is <see cref="AdvisoryLockKey.FromName"/> of it).</summary>
    string Name { get; }

    /// <summary>The leadership this instance holds now, or null (not leading, or the last one ended).</summary>
    Leadership? Current { get; }

    /// <summary>Waits until this instance leads. Failures (no connection, server down) are logged and retried after <see cref="LeaderElectionOptions.RetryDelay"/>.</summary>
    /// <param name="cancellationToken">Stops waiting; a cancelled wait leaves no lock behind.</param>
    /// <returns>The leadership; dispose it to resign.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">This election already leads (dispose <see cref="Current"/> first), or a session lock was asked for through a pooler.</exception>
    Task<Leadership> AcquireAsync(CancellationToken cancellationToken = default);

    /// <summary>One attempt that does not wait for the current leader.</summary>
    /// <param name="cancellationToken">Cancels the attempt.</param>
    /// <returns>The leadership, or null when another instance leads (or <see cref="LeaderElectionOptions.CanLead"/> said no).</returns>
    /// <exception cref="InvalidOperationException">This election already leads, or a session lock was asked for through a pooler.</exception>
    Task<Leadership?> TryAcquireAsync(CancellationToken cancellationToken = default);
}
