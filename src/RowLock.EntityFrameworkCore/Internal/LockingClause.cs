using System.Globalization;
using System.Linq.Expressions;
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

    /// <summary>One item of the FROM list: the alias to write in OF, the names it answers to, and whether it is on the nullable side of an outer join.</summary>
    private sealed record FromItem(string Alias, IReadOnlySet<string> Names, bool Nullable, bool Lockable);

    /// <summary>The locking clause for <paramref name="select"/>, e.g. <c>FOR UPDATE OF o NOWAIT</c>.</summary>
    /// <exception cref="InvalidOperationException">PostgreSQL cannot lock this query, or an OF name matches no table or several.</exception>
    public static string Render(SelectExpression select, RowLockClause clause, ISqlGenerationHelper sql)
    {
        RefuseUnlockable(select, "the query");
        var items = FromItems(select);
        List<string> of;
        if (clause.Tables.Count == 0)
        {
            // Without OF PostgreSQL locks every table, and refuses when an Include put one on the nullable side of a LEFT JOIN.
            // The rows the query is about are the ones on the non-nullable side: lock those.
            of = items.Any(i => i.Nullable) ? [.. items.Where(i => !i.Nullable && i.Lockable).Select(i => i.Alias)] : [];
        }
        else
        {
            of = [];
            foreach (var name in clause.Tables)
            {
                var item = Resolve(items, name);
                if (!of.Contains(item.Alias, StringComparer.Ordinal))
                {
                    of.Add(item.Alias);
                }
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

    private static FromItem Resolve(List<FromItem> items, string name)
    {
        var matches = items.Where(i => i.Names.Contains(name)).ToList();
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

    private static string Describe(List<FromItem> items) =>
        string.Join("; ", items.Select(i => $"{i.Alias} ({string.Join(", ", i.Names.Where(n => n != i.Alias).Order(StringComparer.Ordinal))})"));

    private static List<FromItem> FromItems(SelectExpression select)
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
            var inner = table is JoinExpressionBase join ? join.Table : table;
            var names = new HashSet<string>(StringComparer.Ordinal);
            var lockable = AddNames(inner, names);
            items.Add(new FromItem(inner.Alias!, names, nullable, lockable));
        }

        return items;
    }

    /// <summary>Adds the names a FROM item answers to; returns whether PostgreSQL can lock it (a table or a sub-query).</summary>
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

                return true;
            case SelectExpression subquery:
                foreach (var item in FromItems(subquery).Where(i => !i.Nullable))
                {
                    names.UnionWith(item.Names);
                }

                return true;
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
