using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Npgsql;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>
/// Runs locking commands (recognized by the first line the generator writes): refuses them without a transaction, and for
/// NOWAIT and timed locks, or when the context already tracks entities, executes the command itself and hands EF a
/// <see cref="LockingDataReader"/>. No state is kept per command object: Npgsql hands the same command object out again
/// for the next statement.
/// </summary>
internal sealed class RowLockCommandInterceptor(LockedRowShapes shapes) : DbCommandInterceptor
{
    public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result)
    {
        if (!IsLocking(command, out var savepoint) || result.HasResult)
        {
            return result;
        }

        RequireTransaction(command);
        var refresher = Refresher(command, eventData.Context);
        if (!savepoint && refresher is null)
        {
            return result;
        }

        var watch = new TrackedEntries(eventData.Context);
        try
        {
            return InterceptionResult<DbDataReader>.SuppressWithResult(new LockingDataReader(command.ExecuteReader(), command, watch, savepoint, refresher));
        }
        catch (PostgresException e) when (savepoint && e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            throw LockingDataReader.Recover(command, watch, e);
        }
    }

    public override async ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData,
        InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
    {
        if (!IsLocking(command, out var savepoint) || result.HasResult)
        {
            return result;
        }

        RequireTransaction(command);
        var refresher = Refresher(command, eventData.Context);
        if (!savepoint && refresher is null)
        {
            return result;
        }

        var watch = new TrackedEntries(eventData.Context);
        try
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            return InterceptionResult<DbDataReader>.SuppressWithResult(new LockingDataReader(reader, command, watch, savepoint, refresher));
        }
        catch (PostgresException e) when (savepoint && e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            throw await LockingDataReader.RecoverAsync(command, watch, e).ConfigureAwait(false);
        }
    }

    /// <summary>A refresher when the context already tracks entities the command may return; null when it tracks none.</summary>
    private TrackedRowRefresher? Refresher(DbCommand command, DbContext? context)
    {
        if (context is null || shapes.Find(command.CommandText) is not { } shape)
        {
            return null;
        }

        var stateManager = context.GetService<IStateManager>();
        return stateManager.Count == 0 ? null : new TrackedRowRefresher(context, stateManager, shape);
    }

    private static bool IsLocking(DbCommand command, out bool savepoint)
    {
        var text = command.CommandText;
        if (text is null || !text.StartsWith(RowLockQuerySqlGenerator.Marker, StringComparison.Ordinal))
        {
            savepoint = false;
            return false;
        }

        var secondLine = text.IndexOf('\n', StringComparison.Ordinal) + 1;
        savepoint = string.CompareOrdinal(text, secondLine, RowLockQuerySqlGenerator.SavepointStatement, 0, RowLockQuerySqlGenerator.SavepointStatement.Length) == 0;
        return true;
    }

    private static void RequireTransaction(DbCommand command)
    {
        if (command.Transaction is null && System.Transactions.Transaction.Current is null)
        {
            throw new InvalidOperationException(
                "WithRowLock needs a transaction on the context: without one the SELECT runs in autocommit and its row locks are released as soon as it ends. " +
                "Call db.Database.BeginTransactionAsync() first (or run the work through DbContextTransactionRunner). Nothing was sent.");
        }
    }
}

/// <summary>
/// The entities a locking query starts tracking, so that they can be detached when the query fails part-way: their
/// locks are gone (rolled back to the savepoint), so they must not look like locked, current rows.
/// </summary>
internal sealed class TrackedEntries
{
    private readonly DbContext? _context;
    private List<object>? _entities;

    public TrackedEntries(DbContext? context)
    {
        _context = context;
        if (context is not null)
        {
            context.ChangeTracker.Tracked += OnTracked;
        }
    }

    private void OnTracked(object? sender, Microsoft.EntityFrameworkCore.ChangeTracking.EntityTrackedEventArgs e)
    {
        if (e.FromQuery)
        {
            (_entities ??= []).Add(e.Entry.Entity);
        }
    }

    public void Stop()
    {
        if (_context is not null)
        {
            _context.ChangeTracker.Tracked -= OnTracked;
        }
    }

    public void DetachAll()
    {
        Stop();
        if (_context is null || _entities is null)
        {
            return;
        }

        foreach (var entity in _entities)
        {
            _context.Entry(entity).State = EntityState.Detached;
        }
    }
}
