using System.Linq.Expressions;
using Microsoft.EntityFrameworkCore.Query;
using Microsoft.EntityFrameworkCore.Query.SqlExpressions;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql.EntityFrameworkCore.PostgreSQL.Query.Internal;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>
/// efcore.pg's SQL generator, plus the locking clause for queries tagged by WithRowLock. NOWAIT and timed locks run inside
/// a savepoint (and a timed lock saves and restores the caller's lock_timeout around the SELECT, all in the same command),
/// exactly as the core's LockRowsAsync does, so that a refused lock leaves the transaction usable.
/// </summary>
/// <remarks>Derives from an efcore.pg internal API; RowLock.EntityFrameworkCore pins efcore.pg 10.0.x and tests it.</remarks>
internal sealed class RowLockQuerySqlGenerator(
    QuerySqlGeneratorDependencies dependencies,
    IRelationalTypeMappingSource typeMappingSource,
    bool reverseNullOrderingEnabled,
    Version postgresVersion,
    LockedRowShapes shapes)
    : NpgsqlQuerySqlGenerator(dependencies, typeMappingSource, reverseNullOrderingEnabled, postgresVersion)
{
    /// <summary>The first line of every locking command; the command interceptor recognizes locking commands by it.</summary>
    public const string Marker = "-- RowLock: ";

    public const string Savepoint = "rowlock_lock";

    /// <summary>Present in commands whose SELECT runs inside RowLock's savepoint (NOWAIT and timed locks).</summary>
    public const string SavepointStatement = "SAVEPOINT " + Savepoint + ";";

    private LockedRowShape? _shape;

    private readonly HashSet<LeftJoinExpression> _innerJoins = new(ReferenceEqualityComparer.Instance);

    public override IRelationalCommand GetCommand(Expression queryExpression)
    {
        _shape = null;
        _innerJoins.Clear();
        var command = base.GetCommand(queryExpression);
        if (_shape is not null)
        {
            shapes.Add(command.CommandText, _shape);
        }

        return command;
    }

    protected override void GenerateRootCommand(Expression queryExpression)
    {
        if (queryExpression is not SelectExpression select || RowLockTag.Find(select.Tags) is not { } clause)
        {
            base.GenerateRootCommand(queryExpression);
            return;
        }

        if (select.Tables is [FromSqlExpression] && select.Predicate is null && select.Orderings.Count == 0 && select.Limit is null && select.Offset is null)
        {
            throw new InvalidOperationException(
                "WithRowLock cannot lock a FromSql / FromSqlRaw query that is not composed: its SQL is sent as written. Write the locking clause in the SQL, or compose the query (e.g. add a Where).");
        }

        var lockSql = LockingClause.Render(select, clause, Dependencies.SqlGenerationHelper, _innerJoins);
        _shape = LockedRowShape.For(select);
        var timeout = clause.Timeout is { } t ? LockingClause.Milliseconds(t) : null;
        Sql.Append(Marker).Append(lockSql);
        if (timeout is not null)
        {
            Sql.Append(" (lock_timeout ").Append(timeout).Append("ms)");
        }

        Sql.AppendLine();
        var savepoint = clause.WaitPolicy is LockWaitPolicy.NoWait or LockWaitPolicy.Timeout;
        if (savepoint)
        {
            Sql.AppendLine(SavepointStatement);
        }

        if (timeout is not null)
        {
            // DO blocks return no result set, so EF still reads the SELECT's rows as the command's first result.
            Sql.Append("DO $rowlock$BEGIN PERFORM set_config('rowlock.saved_lock_timeout', current_setting('lock_timeout'), true); ")
                .Append("PERFORM set_config('lock_timeout', '").Append(timeout).AppendLine("', true); END$rowlock$;");
        }

        base.GenerateRootCommand(select);
        Sql.AppendLine().Append(lockSql);
        if (timeout is not null)
        {
            Sql.AppendLine(";").Append("DO $rowlock$BEGIN PERFORM set_config('lock_timeout', current_setting('rowlock.saved_lock_timeout'), true); END$rowlock$");
        }

        if (savepoint)
        {
            Sql.AppendLine(";").Append("RELEASE SAVEPOINT ").Append(Savepoint);
        }
    }

    /// <summary>A self-join on the primary key (table splitting) in a locking query: INNER JOIN, the same rows, lockable.</summary>
    protected override Expression VisitLeftJoin(LeftJoinExpression leftJoinExpression)
    {
        if (!_innerJoins.Contains(leftJoinExpression))
        {
            return base.VisitLeftJoin(leftJoinExpression);
        }

        Sql.Append("INNER JOIN ");
        Visit(leftJoinExpression.Table);
        Sql.Append(" ON ");
        Visit(leftJoinExpression.JoinPredicate);
        return leftJoinExpression;
    }

    protected override void GenerateTagsHeaderComment(ISet<string> tags)
    {
        if (tags.Any(RowLockTag.IsRowLockTag))
        {
            tags = tags.Where(t => !RowLockTag.IsRowLockTag(t)).ToHashSet();
        }

        base.GenerateTagsHeaderComment(tags);
    }
}
