using System.Linq.Expressions;
using System.Reflection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Query;

namespace RowLock.EntityFrameworkCore;

/// <summary>
/// Row locks in LINQ: <see cref="WithRowLock{T}"/> adds PostgreSQL's locking clause (<c>FOR UPDATE</c>, <c>NOWAIT</c>,
/// <c>SKIP LOCKED</c>, ...) to the SQL EF generates for a query, and <see cref="ClaimRowsAsync{T}"/> claims a batch of
/// rows nobody else holds. Needs <c>UseRowLock()</c> on the context's options and a transaction on the context.
/// </summary>
public static class RowLockQueryableExtensions
{
    internal static readonly MethodInfo WithRowLockMethod =
        typeof(RowLockQueryableExtensions).GetMethod(nameof(WithRowLock), BindingFlags.Public | BindingFlags.Static)!;

    /// <summary>
    /// Locks the rows the query returns, with <paramref name="clause"/> appended to the generated SELECT by EF's SQL
    /// generation (<c>ToQueryString()</c> shows it). The rows stay locked until the context's transaction commits or
    /// rolls back. With <c>NoWait()</c> or <c>WithTimeout(...)</c> the SELECT runs inside a savepoint: when a row is held
    /// by someone else the query throws <see cref="LockNotAvailableException"/>, the transaction is still usable, no
    /// lock_timeout is left behind, and no entity the failed query materialized stays tracked.
    /// </summary>
    /// <remarks>
    /// <para>The clause applies to the whole query, wherever <c>WithRowLock</c> appears in it. <c>Of(...)</c> takes table
    /// names, the aliases EF gives them in the SQL, or entity type names (<c>Of("Order")</c>); RowLock writes the alias.</para>
    /// <para>With <c>Include</c> in a single query (a LEFT JOIN), only the rows of the query's own entity are locked
    /// (PostgreSQL cannot lock the nullable side of an outer join); naming an included table in <c>Of</c> is refused.
    /// In a split query (<c>AsSplitQuery()</c>) each SQL statement carries the clause, so the included rows are locked too.</para>
    /// <para>Refused before anything is sent (<see cref="InvalidOperationException"/>): GroupBy, Distinct, Union / Concat /
    /// Intersect / Except, aggregates (Count, Sum, Max...), Any / All, and a query run with no transaction on the context
    /// (an autocommit lock would be released as soon as the SELECT ends).</para>
    /// </remarks>
    /// <typeparam name="T">The query's element type.</typeparam>
    /// <param name="source">An EF Core query on a context configured with <c>UseNpgsql(...).UseRowLock()</c>.</param>
    /// <param name="clause">Strength, wait policy and OF list, e.g. <c>RowLockClause.ForUpdate.NoWait()</c>.</param>
    /// <returns>The same query, locking the rows it returns.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="source"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="source"/> is not an EF Core query, or <paramref name="clause"/> has <see cref="RowLockClause.WithoutSavepoint"/> (not supported here).</exception>
    public static IQueryable<T> WithRowLock<T>(this IQueryable<T> source, [NotParameterized] RowLockClause clause)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.Provider is not IAsyncQueryProvider)
        {
            throw new ArgumentException("WithRowLock works on EF Core queries (a DbSet or a query built from one).", nameof(source));
        }

        if (clause.WaitPolicy is LockWaitPolicy.NoWait or LockWaitPolicy.Timeout && !clause.UsesSavepoint)
        {
            // EF tracks the entities a query materializes; RowLock's savepoint is what lets it undo a half-read query.
            throw new ArgumentException(
                $"WithRowLock does not support WithoutSavepoint() ({clause}): a NOWAIT or timed lock in EF always runs in a savepoint. Lock the rows with one query instead of many, or use LockRowsAsync / LockRowsByKeyAsync on the context's NpgsqlTransaction.",
                nameof(clause));
        }

        return source.Provider.CreateQuery<T>(Expression.Call(
            null, WithRowLockMethod.MakeGenericMethod(typeof(T)), source.Expression, Expression.Constant(clause)));
    }

    /// <summary>
    /// Claims up to <paramref name="limit"/> rows of the query that no other transaction holds:
    /// <c>LIMIT n FOR UPDATE SKIP LOCKED</c>. Workers running this concurrently never get the same row and never wait for
    /// each other. The rows stay locked until the context's transaction ends, so process them (and mark them done) in it.
    /// </summary>
    /// <typeparam name="T">The query's element type.</typeparam>
    /// <param name="source">The rows to claim from, usually filtered and ordered (oldest first).</param>
    /// <param name="limit">The most rows to claim; at least 1.</param>
    /// <param name="cancellationToken">Cancels the query.</param>
    /// <returns>The claimed rows; empty when every matching row is taken or none is left.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="limit"/> is less than 1.</exception>
    /// <exception cref="InvalidOperationException">No transaction on the context, or a query PostgreSQL cannot lock. Nothing was sent.</exception>
    public static Task<List<T>> ClaimRowsAsync<T>(this IQueryable<T> source, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        return source.Take(limit).WithRowLock(RowLockClause.ForUpdate.SkipLocked()).ToListAsync(cancellationToken);
    }
}
