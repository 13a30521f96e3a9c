namespace RowLock.Hosting;

/// <summary>
/// Thrown by <see cref="LeaderFenceTransactionExtensions.FenceAsync"/> when the leadership's epoch is no longer the current
/// one: another instance has become leader since, so this transaction must not commit. The transaction is left open and
/// unchanged by the check; roll it back (a <see cref="TransactionRunner"/> does, and does not retry this exception).
/// </summary>
public sealed class LeadershipLostException : RowLockException
{
    /// <summary>Creates the exception for a fenced transaction whose epoch moved on.</summary>
    /// <param name="name">The election's name.</param>
    /// <param name="epoch">The epoch the transaction was fenced with.</param>
    /// <param name="currentEpoch">The epoch the database holds now, or null when the election has no row.</param>
    public LeadershipLostException(string name, long epoch, long? currentEpoch)
        : base(currentEpoch is { } current
            ? $"Leadership of '{name}' was lost: this transaction is fenced with epoch {epoch}, but epoch {current} is current. Another instance leads now; roll back."
            : $"Leadership of '{name}' was lost: this transaction is fenced with epoch {epoch}, but the election has no epoch row. Roll back.")
    {
        Name = name;
        Epoch = epoch;
        CurrentEpoch = currentEpoch;
    }

    /// <summary>The election's name.</summary>
    public string Name { get; }

    /// <summary>The epoch the transaction was fenced with.</summary>
    public long Epoch { get; }

    /// <summary>The epoch current in the database at the check, or null when the election's row is missing.</summary>
    public long? CurrentEpoch { get; }

    /// <summary>False: retrying the same transaction cannot succeed; only a new leadership can.</summary>
    public override bool IsTransient => false;
}
