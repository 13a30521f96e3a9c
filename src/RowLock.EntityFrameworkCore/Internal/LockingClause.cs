using System.Globalization;
using System.Linq.Expressions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Query.SqlExpressions;
using Microsoft.EntityFrameworkCore.Storage;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>
/// Checks that PostgreSQL can lock a translated query and renders the locking clause with the aliases EF generated.
/// Everything here runs during SQL generation, so a refusal is thrown before anything is sent.
/// </summary>
internal static class LockingClause
{
    private static readonly HashSet<string> Aggregates = new(StringComparer.OrdinalIgnoreCase)
    {
        "count", "sum", "avg", "min", "max", "string_agg", "array_agg", "bool_and", "bool_or", "every", "json_agg", "jsonb_agg",
        "json_object_agg", "jsonb_object_agg", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp",
        "range_agg", "range_intersect_agg", "percentile_cont", "percentile_disc", "mode", "corr", "covar_pop", "covar_samp",
        "bit_and", "bit_or", "bit_xor", "regr_slope", "regr_intercept", "regr_count", "regr_r2", "regr_avgx", "regr_avgy",
        "regr_sxx", "regr_syy", "regr_sxy",
    };

    /// <summary>
    /// One item of the FROM list: the alias to write in OF, the names it answers to, whether it is on the nullable side of
    /// an outer join, whether PostgreSQL can lock it, and the expression itself.
    /// </summary>
    private sealed record FromItem(string Alias, IReadOnlySet<string> Names, bool Nullable, bool Lockable, TableExpressionBase Table);

    /// <summary>The locking clause for <paramref name="select"/>, e.g. <c>FOR UPDATE OF o NOWAIT</c>.</summary>
    /// <exception cref="InvalidOperationException">PostgreSQL cannot lock this query, or cannot lock every row it returns, or an OF name matches no table or several.</exception>
    public static string Render(SelectExpression select, RowLockClause clause, ISqlGenerationHelper sql) =>
        Render(select, clause, sql, new HashSet<LeftJoinExpression>());

    /// <summary>
    /// As <see cref="Render(SelectExpression, RowLockClause, ISqlGenerationHelper)"/>; <paramref name="innerJoins"/> receives the
    /// LEFT JOINs to write as INNER JOIN: a table joined to itself on its primary key (table splitting), which always finds
    /// its own row, so the two are the same and the joined side can then be locked (and is re-read after a lock wait).
    /// </summary>
    public static string Render(SelectExpression select, RowLockClause clause, ISqlGenerationHelper sql, ISet<LeftJoinExpression> innerJoins)
    {
        RefuseUnlockable(select, "the query");
        var items = FromItems(select, innerJoins);

        // Accepted means locked: every FROM item whose columns the query returns must be locked by the clause, or PostgreSQL
        // hands back its values from the snapshot taken before the lock wait (and nobody is stopped from changing them).
        var returned = ReturnedItems(select, items);
        foreach (var item in returned)
        {
            RefuseUnlockedReturn(item, items);
        }

        List<string> of;
        if (clause.Tables.Count == 0)
        {
            // Without OF PostgreSQL locks every table, and refuses when a join put one on the nullable side of a LEFT JOIN
            // (only used to filter here: a returned one was refused above). Lock the others.
            of = items.Any(i => i.Nullable) ? [.. items.Where(i => !i.Nullable && i.Lockable).Select(i => i.Alias)] : [];
        }
        else
        {
            of = [];
            foreach (var name in clause.Tables)
            {
                var item = Resolve(items, name);
                if (item is not null && !of.Contains(item.Alias, StringComparer.Ordinal))
                {
                    of.Add(item.Alias);
                }
            }

            // Of(...) narrows what a join locks among the tables it only filters by; the rows the query returns are always
            // locked (a split query's statement for an Include returns the included rows, and they are locked with it).
            foreach (var item in returned.Where(i => !of.Contains(i.Alias, StringComparer.Ordinal)))
            {
                of.Add(item.Alias);
            }
        }

        var text = new System.Text.StringBuilder(clause.Strength switch
        {
            LockStrength.Update => "FOR UPDATE",
            LockStrength.NoKeyUpdate => "FOR NO KEY UPDATE",
            LockStrength.Share => "FOR SHARE",
            LockStrength.KeyShare => "FOR KEY SHARE",
            _ => throw new InvalidOperationException($"Unknown lock strength {clause.Strength}."),
        });
        if (of.Count > 0)
        {
            text.Append(" OF ").AppendJoin(", ", of.Select(a => sql.DelimitIdentifier(a)));
        }

        text.Append(clause.WaitPolicy switch
        {
            LockWaitPolicy.NoWait => " NOWAIT",
            LockWaitPolicy.SkipLocked => " SKIP LOCKED",
            _ => "",
        });
        return text.ToString();
    }

    /// <summary>Whole milliseconds, rounded up so that a sub-millisecond timeout does not become 0 ("no timeout"), as in the core.</summary>
    public static string Milliseconds(TimeSpan timeout) =>
        ((int)Math.Min(int.MaxValue, Math.Ceiling(timeout.TotalMilliseconds))).ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// For each column of the query's projection, the base table and column it reads (through FROM sub-queries), or null
    /// (a computed value). The command interceptor uses it to find the rows a query returns among the tracked entities.
    /// </summary>
    public static IReadOnlyList<(TableExpression Table, string Column)?> ProjectionSources(SelectExpression select)
    {
        var sources = new List<(TableExpression, string)?>(select.Projection.Count);
        foreach (var projection in select.Projection)
        {
            sources.Add(projection.Expression is ColumnExpression column ? Source(select, column.TableAlias, column.Name) : null);
        }

        return sources;
    }

    private static (TableExpression, string)? Source(SelectExpression select, string alias, string column)
    {
        foreach (var table in select.Tables)
        {
            var inner = table is JoinExpressionBase join ? join.Table : table;
            if (inner.Alias != alias)
            {
                continue;
            }

            switch (inner)
            {
                case TableExpression t:
                    return (t, column);
                case SelectExpression subquery when subquery.Projection.FirstOrDefault(p => p.Alias == column)?.Expression is ColumnExpression c:
                    return Source(subquery, c.TableAlias, c.Name);
                default:
                    return null;
            }
        }

        return null;
    }

    /// <summary>The FROM items whose columns the projection returns; a value read by a sub-query is refused (nothing locks it).</summary>
    private static List<FromItem> ReturnedItems(SelectExpression select, List<FromItem> items)
    {
        var finder = new ColumnFinder();
        foreach (var projection in select.Projection)
        {
            finder.Visit(projection.Expression);
        }

        if (finder.Subquery)
        {
            throw new InvalidOperationException(
                "WithRowLock cannot lock a value the query reads through a sub-query in its projection (e.g. o.Lines.Count() or o.Lines.First().Qty in a Select): " +
                "PostgreSQL locks the rows of the FROM list only, so that value is neither locked nor re-read after a lock wait. " +
                "Lock those rows with their own query (db.OrderLines.Where(...).WithRowLock(...)), or Include them (a split query locks them).");
        }

        return [.. items.Where(i => finder.Aliases.Contains(i.Alias))];
    }

    private static void RefuseUnlockedReturn(FromItem item, List<FromItem> items)
    {
        var types = item.Table is TableExpression t
            ? t.Table.EntityTypeMappings.Select(m => m.TypeBase).OfType<IEntityType>().ToList()
            : [];
        var lockedTables = items.Where(i => !i.Nullable).Select(i => i.Table).OfType<TableExpression>().Select(i => i.Table).ToHashSet();
        if (item.Nullable && BaseTables(item.Table).FirstOrDefault(lockedTables.Contains) is { } shared)
        {
            throw new InvalidOperationException(
                $"WithRowLock cannot lock every row this query returns: '{item.Alias}' reads an optional dependent sharing the table {shared.Name} with its principal (table splitting), " +
                "through a LEFT JOIN whose nullable side PostgreSQL cannot lock, and whose values it returns from the snapshot taken before a lock wait (a lost update). " +
                $"Make the dependent required (modelBuilder.Entity<{Names(shared.EntityTypeMappings.Select(m => m.TypeBase).Where(tb => tb is IEntityType { } e && e.FindOwnership() is null && e.GetForeignKeys().All(fk => fk.PrincipalEntityType.GetTableName() != shared.Name)))}>().Navigation(...).IsRequired()): " +
                "RowLock then joins the row to itself with an INNER JOIN and locks it. Nothing was sent.");
        }

        if (item.Nullable)
        {
            var derived = types.Where(e => e.BaseType is not null && e.GetMappingStrategy() == RelationalAnnotationNames.TptMappingStrategy).ToList();
            var owned = types.Where(e => e.IsOwned()).ToList();
            string advice;
            if (derived.Count > 0)
            {
                advice = $"'{Describe(item)}' holds the columns of {Names(derived)}, a TPT derived type, joined to the base table with a LEFT JOIN. " +
                    $"Query the derived set instead ({string.Join(", ", derived.Select(e => $"db.Set<{e.ClrType.Name}>()"))}): it joins its tables with INNER JOIN and locks every one of them";
            }
            else if (owned.Count > 0 && owned.Any(e => e.FindOwnership() is { IsUnique: false }))
            {
                advice = $"'{Describe(item)}' holds {Names(owned)}, owned by {Names(owned.Select(e => e.FindOwnership()!.PrincipalEntityType))} and loaded with a LEFT JOIN. " +
                    "Write AsSplitQuery() instead of AsSingleQuery() (each statement of a split query locks its own rows)";
            }
            else if (owned.Count > 0)
            {
                advice = $"'{Describe(item)}' holds {Names(owned)}, an owned type in a table of its own, loaded with a LEFT JOIN. " +
                    "Store it in its owner's table (the default for OwnsOne) or as JSON (ToJson()), whose columns are locked with the owner's row";
            }
            else
            {
                advice = $"'{Describe(item)}' is read through a LEFT JOIN (an Include of a collection in a single query, an Include of an optional reference, or a left join). " +
                    "For a collection write AsSplitQuery() instead of AsSingleQuery() (each statement of a split query locks its own rows); " +
                    "for a reference, lock it with its own query (db.Set<T>().Where(...).WithRowLock(...))";
            }

            throw new InvalidOperationException(
                $"WithRowLock cannot lock every row this query returns: PostgreSQL cannot lock the nullable side of an outer join, and after a lock wait it returns " +
                $"that side's values from the snapshot taken before the wait (a lost update). {advice}. Nothing was sent.");
        }

        if (!item.Lockable)
        {
            string what = item.Table switch
            {
                TableValuedFunctionExpression f => $"the function {f.Name}() (a queryable / table-valued function)",
                FromSqlExpression => "FromSql / FromSqlRaw SQL (it may read a view, a function or a WITH query, through which PostgreSQL locks nothing)",
                TableExpression v => $"'{v.Name}', mapped as a view or SQL query, not a table (a view over a function or a WITH query locks nothing)",
                _ when item.Table.GetType().Name == "TpcTablesExpression" =>
                    "the UNION ALL of a TPC hierarchy's tables; query a concrete set instead (db.Set<TConcrete>())",
                _ => $"'{item.Alias}' ({item.Table.GetType().Name}), which is not a table",
            };
            throw new InvalidOperationException(
                $"WithRowLock cannot lock the rows this query returns from {what}: PostgreSQL silently locks nothing there. " +
                "Query the entity's table through its DbSet (db.Set<T>().Where(...).WithRowLock(...)), or write the locking clause in your own SQL. Nothing was sent.");
        }
    }

    private static List<IEntityType> TpcConcreteTypes(SelectExpression select)
    {
        var tables = new List<ITableBase>();
        void Collect(Expression? node)
        {
            switch (node)
            {
                case TableExpression t:
                    tables.Add(t.Table);
                    break;
                case SetOperationBase set:
                    Collect(set.Source1);
                    Collect(set.Source2);
                    break;
                case SelectExpression s:
                    foreach (var table in s.Tables)
                    {
                        Collect(table is JoinExpressionBase j ? j.Table : table);
                    }

                    break;
            }
        }

        Collect(select);
        return [.. tables.SelectMany(t => t.EntityTypeMappings.Select(m => m.TypeBase)).OfType<IEntityType>()
            .Where(e => !e.ClrType.IsAbstract && e.GetMappingStrategy() == RelationalAnnotationNames.TpcMappingStrategy).Distinct()];
    }

    private static string Names(IEnumerable<IReadOnlyTypeBase> types) => string.Join(", ", types.Select(t => t.ClrType.Name).Distinct());

    private static string Describe(FromItem item) => item.Table is TableExpression t ? $"{t.Name} AS {item.Alias}" : item.Alias;

    private static FromItem? Resolve(List<FromItem> items, string name)
    {
        var matches = items.Where(i => i.Names.Contains(name)).ToList();
        if (matches.Count == 0 && InModel(items, name))
        {
            // A table of another statement of a split query (e.g. the Include's table in the parent's statement): that
            // statement returns its rows, and rows a statement returns are always locked.
            return null;
        }

        if (matches.Count == 0)
        {
            throw new InvalidOperationException(
                $"Of(\"{name}\") names no table of this query. Name a table, an entity type or an alias of the generated SQL: {Describe(items)}.");
        }

        if (matches.Count > 1)
        {
            throw new InvalidOperationException(
                $"Of(\"{name}\") is ambiguous: it matches {string.Join(", ", matches.Select(m => m.Alias))}. Name the alias of the generated SQL instead (see ToQueryString()).");
        }

        var item = matches[0];
        if (item.Nullable)
        {
            throw new InvalidOperationException(
                $"Of(\"{name}\") names '{item.Alias}', which is on the nullable side of a LEFT JOIN (an Include or a left join): PostgreSQL cannot lock it. " +
                "Lock those rows with their own query, or use AsSplitQuery() so that each statement locks its own rows.");
        }

        if (!item.Lockable)
        {
            throw new InvalidOperationException($"Of(\"{name}\") names '{item.Alias}', which is not a table or a sub-query: PostgreSQL cannot lock it.");
        }

        return item;
    }

    private static bool InModel(List<FromItem> items, string name) =>
        items.Select(i => i.Table).OfType<TableExpression>().FirstOrDefault()?.Table.Model is { } model
        && (model.Tables.Any(t => t.Name == name) || model.Model.GetEntityTypes().Any(e => e.ClrType.Name == name || e.ShortName() == name));

    private static string Describe(List<FromItem> items) =>
        string.Join("; ", items.Select(i => $"{i.Alias} ({string.Join(", ", i.Names.Where(n => n != i.Alias).Order(StringComparer.Ordinal))})"));

    private static IEnumerable<ITableBase> BaseTables(TableExpressionBase table) => table switch
    {
        TableExpression t => [t.Table],
        SelectExpression s => s.Tables.SelectMany(x => BaseTables(x is JoinExpressionBase j ? j.Table : x)),
        _ => [],
    };

    /// <summary>A LEFT JOIN of a table to itself on its whole primary key: it always finds the row it starts from.</summary>
    private static bool IsSelfJoinOnKey(LeftJoinExpression join, List<FromItem> items)
    {
        if (join.Table is not TableExpression { Table: ITable { PrimaryKey: { } key } table } joined)
        {
            return false;
        }

        var pairs = new List<(ColumnExpression, ColumnExpression)>();
        if (!Equalities(join.JoinPredicate, pairs))
        {
            return false;
        }

        foreach (var item in items.Where(i => !i.Nullable && i.Table is TableExpression other && other.Table == table))
        {
            var matched = key.Columns.All(c => pairs.Any(p =>
                (p.Item1.TableAlias == item.Alias && p.Item2.TableAlias == joined.Alias || p.Item2.TableAlias == item.Alias && p.Item1.TableAlias == joined.Alias)
                && p.Item1.Name == c.Name && p.Item2.Name == c.Name));
            if (matched)
            {
                return true;
            }
        }

        return false;
    }

    private static bool Equalities(SqlExpression predicate, List<(ColumnExpression, ColumnExpression)> pairs)
    {
        switch (predicate)
        {
            case SqlBinaryExpression { OperatorType: ExpressionType.AndAlso } and:
                return Equalities(and.Left, pairs) && Equalities(and.Right, pairs);
            case SqlBinaryExpression { OperatorType: ExpressionType.Equal, Left: ColumnExpression left, Right: ColumnExpression right }:
                pairs.Add((left, right));
                return true;
            default:
                return false;
        }
    }

    private static List<FromItem> FromItems(SelectExpression select, ISet<LeftJoinExpression>? innerJoins = null)
    {
        var items = new List<FromItem>();
        foreach (var table in select.Tables)
        {
            if (table is RightJoinExpression)
            {
                // Everything joined so far is now on the nullable side.
                for (var i = 0; i < items.Count; i++)
                {
                    items[i] = items[i] with { Nullable = true };
                }
            }

            var nullable = table is LeftJoinExpression or OuterApplyExpression;
            if (innerJoins is not null && table is LeftJoinExpression left && IsSelfJoinOnKey(left, items))
            {
                innerJoins.Add(left);
                nullable = false;
            }

            var inner = table is JoinExpressionBase join ? join.Table : table;
            var names = new HashSet<string>(StringComparer.Ordinal);
            var lockable = AddNames(inner, names);
            items.Add(new FromItem(inner.Alias!, names, nullable, lockable, inner));
        }

        return items;
    }

    /// <summary>Adds the names a FROM item answers to; returns whether PostgreSQL locks it (a table, or a sub-query whose returned rows it locks).</summary>
    private static bool AddNames(TableExpressionBase table, HashSet<string> names)
    {
        if (table.Alias is { } alias)
        {
            names.Add(alias);
        }

        switch (table)
        {
            case TableExpression t:
                names.Add(t.Name);
                foreach (var mapping in t.Table.EntityTypeMappings)
                {
                    names.Add(mapping.TypeBase.ClrType.Name);
                    names.Add(mapping.TypeBase.ShortName());
                }

                // A view (ToView) or a SQL query mapping may read a function or a WITH query: PostgreSQL would lock nothing.
                return t.Table is ITable;
            case SelectExpression subquery:
                var lockable = true;
                foreach (var item in FromItems(subquery))
                {
                    if (!item.Nullable)
                    {
                        names.UnionWith(item.Names);
                    }

                    // The lock is pushed into the sub-query, onto every table of it: all must be lockable.
                    lockable &= item.Lockable && !item.Nullable;
                }

                return lockable;
            default:
                return false;
        }
    }

    /// <summary>PostgreSQL refuses a locking clause with these; say so in .NET terms before anything is sent.</summary>
    private static void RefuseUnlockable(SelectExpression select, string what)
    {
        string? reason = null;
        if (select.IsDistinct)
        {
            reason = "Distinct() (SELECT DISTINCT)";
        }
        else if (select.GroupBy.Count > 0 || select.Having is not null)
        {
            reason = "GroupBy (GROUP BY)";
        }
        else if (select.Tables.Any(t => (t is JoinExpressionBase j ? j.Table : t) is SetOperationBase))
        {
            reason = "Union, Concat, Intersect or Except (a set operation)";
        }
        else if (select.Tables.Count == 0)
        {
            reason = "no table (Any, All or an aggregate over a sub-query): it would lock nothing";
        }
        else if (AggregateFinder.Contains(select))
        {
            reason = "an aggregate or window function (Count, Sum, Min, Max, Average...)";
        }

        if (reason is not null && TpcConcreteTypes(select) is { Count: > 0 } concrete)
        {
            throw new InvalidOperationException(
                $"WithRowLock cannot lock {what}: it reads the base set of a TPC hierarchy, a UNION ALL of the tables of {Names(concrete)}, and PostgreSQL locks no row of a set operation. " +
                $"Query a concrete set instead ({string.Join(", ", concrete.Select(e => $"db.Set<{e.ClrType.Name}>()"))}, or OfType<{concrete[0].ClrType.Name}>()), which reads and locks one table. Nothing was sent.");
        }

        if (reason is not null)
        {
            throw new InvalidOperationException(
                $"WithRowLock cannot lock {what}: it has {reason}, and PostgreSQL locks only the rows of a plain SELECT. " +
                "Lock the rows with their own query (e.g. db.Items.Where(...).WithRowLock(...).ToListAsync()), then group or aggregate them in the same transaction.");
        }

        // PostgreSQL pushes the lock into sub-queries of the FROM clause, and refuses it there for the same reasons.
        foreach (var table in select.Tables)
        {
            if ((table is JoinExpressionBase j ? j.Table : table) is SelectExpression subquery && table is not LeftJoinExpression and not OuterApplyExpression)
            {
                RefuseUnlockable(subquery, "a sub-query of the query");
            }
        }
    }

    /// <summary>The table aliases a projection reads columns from, and whether it reads anything through a sub-query.</summary>
    private sealed class ColumnFinder : ExpressionVisitor
    {
        public HashSet<string> Aliases { get; } = new(StringComparer.Ordinal);

        public bool Subquery { get; private set; }

        public override Expression? Visit(Expression? node)
        {
            switch (node)
            {
                case ColumnExpression column:
                    Aliases.Add(column.TableAlias);
                    return node;
                case SelectExpression:
                    Subquery = true;
                    return node;
                default:
                    return base.Visit(node);
            }
        }
    }

    private sealed class AggregateFinder : ExpressionVisitor
    {
        private bool _found;

        public static bool Contains(SelectExpression select)
        {
            var finder = new AggregateFinder();
            foreach (var projection in select.Projection)
            {
                finder.Visit(projection.Expression);
            }

            foreach (var ordering in select.Orderings)
            {
                finder.Visit(ordering.Expression);
            }

            return finder._found;
        }

        public override Expression? Visit(Expression? node)
        {
            switch (node)
            {
                case null:
                    return node;
                case SelectExpression:
                    return node; // a scalar sub-query may aggregate; it is not locked
                case RowNumberExpression:
                    _found = true;
                    return node;
                case SqlFunctionExpression function when Aggregates.Contains(function.Name):
                    _found = true;
                    return node;
                default:
                    return _found ? node : base.Visit(node);
            }
        }
    }
}
