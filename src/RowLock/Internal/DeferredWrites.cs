using System.Runtime.CompilerServices;
using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// The writes one attempt of a unit of work handed to the runner with <see cref="FinalWriteTransactionExtensions.DeferUntilCommit"/>:
/// they are sent, in order, in the commit round trip before the commit check and COMMIT.
/// </summary>
/// <remarks>
/// <para>Bound to the attempt, not to the transaction object: Npgsql hands the same <see cref="NpgsqlTransaction"/> to
/// the next transaction on the same physical connection (attempt 2 of a retry, another unit of work). A deferral finds
/// its queue through the attempt the calling code runs in (<see cref="UnitOfWorkRetrier.CurrentAttempt"/>, which flows
/// into tasks the work starts), and is refused once that attempt's commit has begun, so a late deferral is never sent
/// with another transaction's COMMIT.</para>
/// <para>The transaction object is also registered while the attempt runs, so that <c>ExecuteAndCommitAsync</c> can refuse
/// to commit a transaction a runner owns.</para>
/// </remarks>
internal class DeferredWrites
{
    private static readonly ConditionalWeakTable<NpgsqlTransaction, DeferredWrites> Running = new();

    private List<DeferredWrite>? _writes;
    private bool _sealed;

    /// <summary>The attempt's own queue: the attempt scope itself (<see cref="UnitOfWorkRetrier.AttemptScope"/> derives from
    /// this class, which spares an object per attempt), or a queue of its own outside any runner's retry loop.</summary>
    protected DeferredWrites()
    {
    }

    /// <summary>The transaction of the attempt, once it has begun; compared by reference with the one a deferral names.</summary>
    public NpgsqlTransaction? Transaction { get; private set; }

    /// <summary>The queued writes; read once the queue is sealed. No list is allocated until a write is deferred.</summary>
    public IReadOnlyList<DeferredWrite> Writes => (IReadOnlyList<DeferredWrite>?)_writes ?? [];

    /// <summary>Opens the queue of the attempt running on <paramref name="transaction"/> and binds it to that attempt.</summary>
    public static DeferredWrites Begin(NpgsqlTransaction transaction)
    {
        var writes = (DeferredWrites?)UnitOfWorkRetrier.CurrentAttempt ?? new DeferredWrites();
        writes.Transaction = transaction;
        Running.AddOrUpdate(transaction, writes);
        return writes;
    }

    /// <summary>Closes the attempt's queue; the transaction object may be reused for another transaction after this.</summary>
    public static void End(DeferredWrites writes)
    {
        writes.Seal();
        if (writes.Transaction is { } transaction && Running.TryGetValue(transaction, out var current) && ReferenceEquals(current, writes))
        {
            Running.Remove(transaction);
        }
    }

    /// <summary>Is <paramref name="transaction"/> the transaction of a unit-of-work attempt that is running now?</summary>
    public static bool IsRunnerTransaction(NpgsqlTransaction transaction) => Running.TryGetValue(transaction, out _);

    /// <summary>
    /// The queue a deferral on <paramref name="transaction"/> goes to: the calling code's attempt's, when that attempt runs
    /// on this transaction and its commit has not begun. Otherwise a clear <see cref="InvalidOperationException"/>.
    /// </summary>
    public static DeferredWrites ForDeferral(NpgsqlTransaction transaction)
    {
        DeferredWrites? writes = UnitOfWorkRetrier.CurrentAttempt;
        if (writes?.Transaction is null || !ReferenceEquals(writes.Transaction, transaction))
        {
            throw new InvalidOperationException(
                "DeferUntilCommit works on the transaction a TransactionRunner gives its unit of work, called from that work: the runner sends deferred writes with its COMMIT. "
                + "On a transaction you commit yourself, send the last write with ExecuteAndCommitAsync.");
        }

        writes.ThrowIfSealed();
        return writes;
    }

    /// <summary>Queues the commands recorded for one deferral; refused (never dropped) once the commit has begun.</summary>
    /// <remarks>A deferral may race the commit (a task the work started and did not await): the write was recorded aside,
    /// and is queued under the lock only if the queue is still open, so it is either sent or refused.</remarks>
    public void Add(List<DeferredWrite> recorded)
    {
        // This internal object is never handed out, so nobody else locks on it; a lock object of its own would cost an allocation per attempt.
        lock (this)
        {
            ThrowIfSealed();
            (_writes ??= []).AddRange(recorded);
        }
    }

    /// <summary>No write may be added once the commit batch is being built.</summary>
    public void Seal()
    {
        // This internal object is never handed out, so nobody else locks on it; a lock object of its own would cost an allocation per attempt.
        lock (this)
        {
            _sealed = true;
        }
    }

    private void ThrowIfSealed()
    {
        if (Volatile.Read(ref _sealed))
        {
            throw new InvalidOperationException(
                "The attempt of the unit of work this deferral belongs to has ended or its commit has begun, so the write would never be sent with it " +
                "(and must not be sent with a later attempt's or another unit of work's COMMIT). Defer writes from inside the work, before it returns: await every task that defers.");
        }
    }
}
