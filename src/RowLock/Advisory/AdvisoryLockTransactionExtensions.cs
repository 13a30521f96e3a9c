using Npgsql;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// Transaction-scoped advisory locks (<c>pg_advisory_xact_lock</c>): taken on the caller's transaction and released by
/// its COMMIT or ROLLBACK, never earlier. They work behind PgBouncer transaction pooling.
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
        var command = AdvisorySql.Command(AdvisorySql.TryXact(mode), key, connection, transaction);
        await using (command.ConfigureAwait(false))
        {
            var acquired = (bool)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
            var logger = RowLockLogging.Advisory;
            if (acquired)
            {
                Log.AdvisoryAcquired(logger, key, mode, "transaction");
            }
            else
            {
                Log.AdvisorySkipped(logger, key, mode);
            }

            return acquired;
        }
    }

    /// <summary>
    /// Takes the lock, waiting while another session holds it (<c>pg_advisory_xact_lock</c>). With a timeout, the wait is
    /// bounded by <c>SET LOCAL lock_timeout</c> inside a savepoint, so the timeout does not apply to later statements and
    /// the transaction stays usable when the lock is not granted.
    /// </summary>
    /// <param name="transaction">An open transaction; the lock is held until it ends.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">The longest wait; null waits as long as it takes.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait (the server-side wait is cancelled too).</param>
    /// <exception cref="LockNotAvailableException">The lock was not granted within <paramref name="timeout"/>. The transaction is still usable.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is zero or negative (use <see cref="TryAcquireAdvisoryLockAsync"/> not to wait).</exception>
    /// <exception cref="InvalidOperationException">The transaction is completed or its connection is not open. Nothing was sent.</exception>
    public static async Task AcquireAdvisoryLockAsync(this NpgsqlTransaction transaction, AdvisoryLockKey key, TimeSpan? timeout = null,
        AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default)
    {
        AdvisorySql.ValidateMode(mode);
        timeout = LockTimeout.ValidateWait(timeout, nameof(timeout));
        var connection = TransactionGuard.RequireActive(transaction, nameof(transaction));
        var logger = RowLockLogging.Advisory;
        if (timeout is null)
        {
            var command = AdvisorySql.Command(AdvisorySql.WaitXact(mode), key, connection, transaction);
            await using (command.ConfigureAwait(false))
            {
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            Log.AdvisoryAcquired(logger, key, mode, "transaction");
            return;
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
                Log.AdvisoryAcquired(logger, key, mode, "transaction");
                return;
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
            {
                if (await RollBackAndCheckHeldAsync(connection, transaction, key, mode).ConfigureAwait(false))
                {
                    Log.AdvisoryGrantedAtTimeout(logger, key);
                    return;
                }

                Log.AdvisoryTimedOut(logger, key, mode, LockTimeout.Milliseconds(timeout.Value));
                RowLockTelemetry.CountLockNotAvailable("advisory");
                throw new LockNotAvailableException(AdvisoryMessages.NotGranted(key, timeout.Value), e);
            }
        }
    }

    /// <summary>
    /// Rolls back to the savepoint (undoing the failed wait and the SET LOCAL) and asks pg_locks whether the lock is held
    /// anyway, all in one round trip: PostgreSQL can grant a lock just as lock_timeout fires.
    /// </summary>
    private static async Task<bool> RollBackAndCheckHeldAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, AdvisoryLockKey key, AdvisoryLockMode mode)
    {
        var batch = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand($"ROLLBACK TO SAVEPOINT {Savepoint}"),
                new NpgsqlBatchCommand($"RELEASE SAVEPOINT {Savepoint}"),
                AdvisorySql.IsHeld(key, mode),
            },
        };
        await using (batch.ConfigureAwait(false))
        {
            return (bool)(await batch.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false))!;
        }
    }
}
