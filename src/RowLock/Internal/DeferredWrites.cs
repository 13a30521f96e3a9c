using System.Runtime.CompilerServices;
using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// The writes a unit of work handed to the runner with <see cref="FinalWriteTransactionExtensions.DeferUntilCommit"/>:
/// they are sent, in order, in the commit round trip before the commit check and COMMIT.
/// </summary>
/// <remarks>
/// Found through the attempt's transaction. The entry exists only while the attempt runs: Npgsql reuses transaction
/// objects on a physical connection, so the attempt removes it when it ends, and a later transaction on the same
/// connection never sees this attempt's writes.
/// </remarks>
internal sealed class DeferredWrites
{
    private static readonly ConditionalWeakTable<NpgsqlTransaction, DeferredWrites> Attempts = new();

    private readonly List<NpgsqlBatchCommand> _commands = [];
    private bool _sealed;

    public IReadOnlyList<NpgsqlBatchCommand> Commands => _commands;

    /// <summary>Opens the queue for the attempt running on <paramref name="transaction"/>.</summary>
    public static DeferredWrites Begin(NpgsqlTransaction transaction)
    {
        var writes = new DeferredWrites();
        Attempts.AddOrUpdate(transaction, writes);
        return writes;
    }

    /// <summary>Closes the attempt's queue; the transaction object may be reused for another transaction after this.</summary>
    public static void End(NpgsqlTransaction transaction, DeferredWrites writes)
    {
        writes.Seal();
        if (Attempts.TryGetValue(transaction, out var current) && ReferenceEquals(current, writes))
        {
            Attempts.Remove(transaction);
        }
    }

    public static DeferredWrites? For(NpgsqlTransaction transaction) => Attempts.TryGetValue(transaction, out var writes) ? writes : null;

    /// <summary>Queues one write; Dapper prepares its parameters now, so later changes to <paramref name="param"/> do not matter.</summary>
    /// <remarks>A deferral may race the commit (a task the work started and did not await): the write is recorded
    /// aside, then queued under the lock only if the queue is still open, so it is either sent or refused, never dropped
    /// after its call returned.</remarks>
    public void Add(string sql, object? param)
    {
        ThrowIfSealed();
        var recorded = new List<NpgsqlBatchCommand>();
        DapperBatchCommands.Record(recorded, sql, param);
        lock (_commands)
        {
            ThrowIfSealed();
            _commands.AddRange(recorded);
        }
    }

    /// <summary>No write may be added once the commit batch is being built.</summary>
    public void Seal()
    {
        lock (_commands)
        {
            _sealed = true;
        }
    }

    private void ThrowIfSealed()
    {
        if (Volatile.Read(ref _sealed))
        {
            throw new InvalidOperationException(
                "The unit of work has already returned and its commit has begun; a write deferred now would never be sent. Defer writes from inside the work, before it returns.");
        }
    }
}
