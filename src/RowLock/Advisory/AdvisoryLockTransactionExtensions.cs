using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// Transaction-scoped advisory locks (<c>pg_advisory_xact_lock</c>): taken on the caller's transaction and released by
/// its COMMIT or ROLLBACK, never earlier. They work behind PgBouncer transaction pooling. These methods do not log
/// (they have no logger: the caller owns the transaction and sees the outcome); a lock not granted is counted in
/// <c>rowlock.lock.not_available</c>.
/// </summary>
public static class AdvisoryLockTransactionExtensions
{
    private const string Savepoint = "rowlock_advisory";

    /// <summary>
    /// Takes the lock if it is free, without waiting (<c>pg_try_advisory_xact_lock</c>). Use it for "exactly one worker
    /// does this": the others get false at once and skip.
    /// </summary>
    /// <param name="transaction">An open transaction; the lock is held until it ends.</param>
    /// <param name="key">The lock's key, e.g. <c>AdvisoryLockKey.FromName("registry.sync")</c>.</param>
    /// <param name="mode">Exclusive (one holder) or shared (many shared holders, no exclusive one).</param>
    /// <param name="cancellationToken">Cancels the statement.</param>
    /// <returns>True when this transaction now holds the lock; false when another session holds it.</returns>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    public static async Task<bool> TryAcquireAdvisoryLockAsync(this NpgsqlTransaction transaction, AdvisoryLockKey key,
        AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        AdvisorySql.ValidateMode(mode);
        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));
        var outcome = await TakeAsync(connection, transaction, key, TimeSpan.Zero, mode, cancellationToken).ConfigureAwait(false);
        if (!outcome.Acquired)
        {
            RowLockTelemetry.CountLockNotAvailable("advisory");
        }

        return outcome.Acquired;
    }

    /// <summary>
    /// Takes the lock, waiting while another session holds it (<c>pg_advisory_xact_lock</c>). With a positive timeout the
    /// wait is bounded by <c>SET LOCAL lock_timeout</c> inside a savepoint, so the timeout does not apply to later
    /// statements and the transaction stays usable when the lock is not granted.
    /// </summary>
    /// <param name="transaction">An open transaction; the lock is held until it ends.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">
    /// The longest wait: null or <see cref="Timeout.InfiniteTimeSpan"/> waits as long as it takes; <see cref="TimeSpan.Zero"/>
    /// does not wait (throws at once when the lock is held, like <see cref="TryAcquireAdvisoryLockAsync"/> returning false).
    /// </param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait (the server-side wait is cancelled too).</param>
    /// <exception cref="LockNotAvailableException">The lock was not granted within <paramref name="timeout"/>. The transaction is still usable.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative (other than infinite) or longer than 24.8 days. Nothing was sent.</exception>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    public static async Task AcquireAdvisoryLockAsync(this NpgsqlTransaction transaction, AdvisoryLockKey key, TimeSpan? timeout = null,
        AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        AdvisorySql.ValidateMode(mode);
        timeout = LockTimeout.ValidateAdvisory(timeout, nameof(timeout));
        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));
        var outcome = await TakeAsync(connection, transaction, key, timeout, mode, cancellationToken).ConfigureAwait(false);
        if (!outcome.Acquired)
        {
            RowLockTelemetry.CountLockNotAvailable("advisory");
            throw new LockNotAvailableException(AdvisoryMessages.NotGranted(key, timeout!.Value), outcome.Refusal);
        }
    }

    /// <summary>
    /// Takes a transaction-scoped lock on <paramref name="transaction"/> (validated by the caller). Timeout: null waits as long
    /// as it takes; zero does not wait; positive waits at most that long. Neither logs nor counts.
    /// </summary>
    /// <remarks>
    /// A bounded wait that times out rolls back to its savepoint. That also releases the lock if PostgreSQL granted it
    /// just as lock_timeout fired (a lock taken inside a subtransaction is released when the subtransaction is rolled
    /// back), so "not granted" is exact here, unlike a session lock, which a rollback does not release.
    /// </remarks>
    internal static async Task<AdvisoryOutcome> TakeAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, AdvisoryLockKey key,
        TimeSpan? timeout, AdvisoryLockMode mode, CancellationToken cancellationToken)
    {
        // rowlock.lock.wait.duration, around the locking round trip(s).
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            var outcome = await TakeCoreAsync(connection, transaction, key, timeout, mode, cancellationToken).ConfigureAwait(false);
            RowLockHistograms.RecordLockWait(start, "advisory", outcome.Acquired ? "acquired" : "not_available");
            return outcome;
        }
        catch (Exception e)
        {
            RowLockHistograms.RecordLockWait(start, "advisory", RowLockHistograms.FailureOutcome(e));
            throw;
        }
    }

    private static async Task<AdvisoryOutcome> TakeCoreAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, AdvisoryLockKey key,
        TimeSpan? timeout, AdvisoryLockMode mode, CancellationToken cancellationToken)
    {
        if (timeout == TimeSpan.Zero)
        {
            var tryCommand = AdvisorySql.Command(AdvisorySql.TryXact(mode), key, connection, transaction);
            await using (tryCommand.ConfigureAwait(false))
            {
                return new AdvisoryOutcome((bool)(await tryCommand.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!, null);
            }
        }

        if (timeout is null)
        {
            var command = AdvisorySql.Command(AdvisorySql.WaitXact(mode), key, connection, transaction);
            await using (command.ConfigureAwait(false))
            {
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            return new AdvisoryOutcome(true, null);
        }

        var batch = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand($"SAVEPOINT {Savepoint}"),
                new NpgsqlBatchCommand(LockTimeout.Save),
                new NpgsqlBatchCommand(LockTimeout.SetLocal(timeout.Value)),
                AdvisorySql.Call(AdvisorySql.WaitXact(mode), key),
                new NpgsqlBatchCommand(LockTimeout.Restore),
                new NpgsqlBatchCommand($"RELEASE SAVEPOINT {Savepoint}"),
            },
        };
        await using (batch.ConfigureAwait(false))
        {
            try
            {
                await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                return new AdvisoryOutcome(true, null);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
            {
                // Undoes the failed wait and the SET LOCAL (and a grant that raced the timeout, see remarks).
                var rollback = new NpgsqlCommand($"ROLLBACK TO SAVEPOINT {Savepoint}; RELEASE SAVEPOINT {Savepoint}", connection, transaction);
                await using (rollback.ConfigureAwait(false))
                {
                    await rollback.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }

                return new AdvisoryOutcome(false, e);
            }
        }
    }
}
