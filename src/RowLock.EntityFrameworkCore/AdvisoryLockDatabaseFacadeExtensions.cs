using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace RowLock.EntityFrameworkCore;

/// <summary>
/// Transaction-scoped advisory locks on the context's current transaction (<c>db.Database.CurrentTransaction</c>), with the
/// core's try / wait / timeout API: held until that transaction commits or rolls back.
/// </summary>
public static class AdvisoryLockDatabaseFacadeExtensions
{
    /// <summary>Takes the lock if it is free, without waiting (<c>pg_try_advisory_xact_lock</c>) — "exactly one worker does this".</summary>
    /// <param name="database">The context's <c>Database</c>, with a transaction begun.</param>
    /// <param name="key">The lock's key, e.g. <c>AdvisoryLockKey.FromName("invoices.post")</c>.</param>
    /// <param name="mode">Exclusive (one holder) or shared.</param>
    /// <param name="cancellationToken">Cancels the statement.</param>
    /// <returns>True when the context's transaction now holds the lock; false when another session holds it.</returns>
    /// <exception cref="InvalidOperationException">The context has no transaction (an autocommit lock would be released at once). Nothing was sent.</exception>
    public static Task<bool> TryAcquireAdvisoryLockAsync(this DatabaseFacade database, AdvisoryLockKey key,
        AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default) =>
        Transaction(database).TryAcquireAdvisoryLockAsync(key, mode, cancellationToken);

    /// <summary>
    /// Takes the lock, waiting while another session holds it (<c>pg_advisory_xact_lock</c>); with a timeout the wait is
    /// bounded inside a savepoint, so the transaction stays usable and no lock_timeout is left behind.
    /// </summary>
    /// <param name="database">The context's <c>Database</c>, with a transaction begun.</param>
    /// <param name="key">The lock's key.</param>
    /// <param name="timeout">The longest wait; null waits as long as it takes.</param>
    /// <param name="mode">Exclusive or shared.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="LockNotAvailableException">Not granted within <paramref name="timeout"/>. The transaction is still usable.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is zero or negative.</exception>
    /// <exception cref="InvalidOperationException">The context has no transaction. Nothing was sent.</exception>
    public static Task AcquireAdvisoryLockAsync(this DatabaseFacade database, AdvisoryLockKey key, TimeSpan? timeout = null,
        AdvisoryLockMode mode = AdvisoryLockMode.Exclusive, CancellationToken cancellationToken = default) =>
        Transaction(database).AcquireAdvisoryLockAsync(key, timeout, mode, cancellationToken);

    private static NpgsqlTransaction Transaction(DatabaseFacade database)
    {
        ArgumentNullException.ThrowIfNull(database);
        return database.CurrentTransaction?.GetDbTransaction() as NpgsqlTransaction ?? throw new InvalidOperationException(
            "Advisory locks on an EF context need a transaction on it (db.Database.BeginTransactionAsync()): a transaction-scoped lock " +
            "taken in autocommit is released as soon as the statement ends. Nothing was sent.");
    }
}
