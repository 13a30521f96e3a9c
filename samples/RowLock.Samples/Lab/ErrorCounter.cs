using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;

namespace RowLock.Samples.Lab;

/// <summary>
/// Counts the database errors that reach the caller on one side of a scenario. Every operation a side's workers run
/// goes through <see cref="RunAsync{T}"/>, the way a request handler or a cron job would be wrapped: a database error
/// (a <c>PostgresException</c> such as 40P01 or 40001, any other <c>NpgsqlException</c>, a RowLock exception, a timeout)
/// is counted, by SQLSTATE, and the operation's fallback is returned. So one worker's deadlock is a number in the
/// lab's table, never a crash of the lab. Cancellation and programming errors still propagate.
/// </summary>
public sealed class ErrorCounter
{
    private readonly ConcurrentDictionary<string, int> _byKind = new(StringComparer.Ordinal);
    private int _count;

    /// <summary>Database errors counted so far.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>The errors by kind, e.g. "40P01 x 3, timeout x 1"; empty when there were none.</summary>
    public string Kinds => string.Join(", ", _byKind.OrderBy(k => k.Key, StringComparer.Ordinal)
        .Select(k => string.Create(CultureInfo.InvariantCulture, $"{k.Key} x {k.Value}")));

    /// <summary>Runs one operation; a database error is counted and <paramref name="fallback"/> returned instead.</summary>
    public async Task<T> RunAsync<T>(Func<Task<T>> operation, T fallback)
    {
        try
        {
            return await operation();
        }
        catch (Exception e) when (IsDatabaseError(e))
        {
            Record(e);
            return fallback;
        }
    }

    /// <summary>Runs one operation; returns false when a database error was counted instead.</summary>
    public Task<bool> RunAsync(Func<Task> operation) => RunAsync(async () =>
    {
        await operation();
        return true;
    }, false);

    /// <summary>Counts <paramref name="error"/>.</summary>
    public void Record(Exception error)
    {
        Interlocked.Increment(ref _count);
        _byKind.AddOrUpdate(KindOf(error), 1, (_, n) => n + 1);
    }

    /// <summary>
    /// Whether <paramref name="error"/> is an error the database (or the way to it) gave the caller: what a user would
    /// see as "something went wrong". <c>NpgsqlException</c> and <c>PostgresException</c> are <see cref="DbException"/>s.
    /// Wrapped ones count too: EF Core's <c>SaveChanges</c> wraps them in a <c>DbUpdateException</c>, and its default
    /// execution strategy wraps a transient one (40P01, 40001) again in an <see cref="InvalidOperationException"/>.
    /// </summary>
    public static bool IsDatabaseError(Exception error) =>
        error is DbException or RowLockException or TimeoutException || (error.InnerException is { } inner && IsDatabaseError(inner));

    private static string KindOf(Exception error) =>
        RowLockPredicates.FindSqlState(error)
        ?? (error is TimeoutException || error.InnerException is TimeoutException ? "timeout" : error.GetType().Name);
}
