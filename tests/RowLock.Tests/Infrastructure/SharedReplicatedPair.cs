using RowLock.TestServer;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// One primary + synchronous standby pair for the whole run, started on first use, removed at process exit (or by its
/// watchdog when the run is killed). Every user gets it with a streaming standby: after a failover the standby is rebuilt
/// from the new primary (a base backup is much cheaper than a new pair on 2 cores).
/// </summary>
public static class SharedReplicatedPair
{
    private static readonly Lazy<Task<ReplicatedPair>> Pair = new(() => ReplicatedPair.StartAsync(Console.Error.WriteLine));

    public static async Task<ReplicatedPair> GetWithStandbyAsync()
    {
        var pair = await Pair.Value;
        await pair.RebuildStandbyAsync();
        return pair;
    }
}

/// <summary>The classes that fail the shared pair over run one at a time.</summary>
[CollectionDefinition(Name)]
public sealed class ReplicatedPairCollection
{
    public const string Name = "replicated pair";
}

/// <summary>A fact that needs a primary and a standby from local binaries; skipped, with the reason, where there are none.</summary>
public sealed class ReplicatedPairFactAttribute : FactAttribute
{
    public ReplicatedPairFactAttribute()
    {
        if (!PostgresServer.LocalBinariesAvailable)
        {
            Skip = "A primary and a streaming standby need the PostgreSQL server binaries on this machine (pg_ctl, pg_basebackup); set ROWLOCK_PG_BIN or install postgresql.";
        }
    }
}
