using System.Linq.Expressions;
using System.Reflection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Query;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>
/// Turns <c>WithRowLock(source, clause)</c> into a query tag before EF translates the query, for ordinary and compiled
/// queries alike (a compiled query hands EF the call itself, never running the extension method). A locking query also
/// becomes a split query (unless it says <c>AsSingleQuery()</c>): an Include of a collection, or an owned collection, is then
/// read by its own statement, which locks those rows too, instead of a LEFT JOIN whose nullable side PostgreSQL cannot lock
/// and reads from the snapshot taken before the lock wait.
/// </summary>
internal sealed class RowLockQueryExpressionInterceptor : IQueryExpressionInterceptor
{
    public static readonly RowLockQueryExpressionInterceptor Instance = new();

    private static readonly MethodInfo TagWithMethod = typeof(EntityFrameworkQueryableExtensions)
        .GetMethods(BindingFlags.Public | BindingFlags.Static)
        .Single(m => m.Name == nameof(EntityFrameworkQueryableExtensions.TagWith) && m.GetParameters().Length == 2);

    private static readonly MethodInfo AsSplitQueryMethod = typeof(RelationalQueryableExtensions)
        .GetMethod(nameof(RelationalQueryableExtensions.AsSplitQuery), BindingFlags.Public | BindingFlags.Static)!;

    private static readonly MethodInfo AsSingleQueryMethod = typeof(RelationalQueryableExtensions)
        .GetMethod(nameof(RelationalQueryableExtensions.AsSingleQuery), BindingFlags.Public | BindingFlags.Static)!;

    public Expression QueryCompilationStarting(Expression queryExpression, QueryExpressionEventData eventData)
    {
        var finder = new SplitFinder();
        finder.Visit(queryExpression);
        return new Rewriter(finder.Collections && !finder.Single).Visit(queryExpression);
    }

    /// <summary>
    /// Whether the query may load a collection (an Include, or an entity with an owned or auto-included collection in a
    /// table of its own), and whether it says AsSingleQuery(): then RowLock leaves it single, and refuses a LEFT JOIN
    /// whose rows it returns.
    /// </summary>
    private sealed class SplitFinder : ExpressionVisitor
    {
        public bool Single { get; private set; }

        public bool Collections { get; private set; }

        protected override Expression VisitMethodCall(MethodCallExpression node)
        {
            Single |= node.Method.IsGenericMethod && node.Method.GetGenericMethodDefinition() == AsSingleQueryMethod;
            Collections |= node.Method.DeclaringType == typeof(EntityFrameworkQueryableExtensions)
                && node.Method.Name is nameof(EntityFrameworkQueryableExtensions.Include) or nameof(EntityFrameworkQueryableExtensions.ThenInclude);
            return base.VisitMethodCall(node);
        }

        protected override Expression VisitExtension(Expression node)
        {
            if (node is EntityQueryRootExpression root)
            {
                Collections |= LoadsCollection(root.EntityType, []);
            }

            return base.VisitExtension(node);
        }

        private static bool LoadsCollection(IEntityType type, HashSet<IEntityType> seen)
        {
            if (!seen.Add(type))
            {
                return false;
            }

            foreach (var entityType in type.GetDerivedTypesInclusive())
            {
                foreach (var navigation in entityType.GetDeclaredNavigations())
                {
                    var owned = navigation.ForeignKey.IsOwnership && !navigation.IsOnDependent;
                    if (owned && navigation.TargetEntityType.IsMappedToJson())
                    {
                        continue;
                    }

                    if ((owned || navigation.IsEagerLoaded) && (navigation.IsCollection || LoadsCollection(navigation.TargetEntityType, seen)))
                    {
                        return true;
                    }
                }
            }

            return false;
        }
    }

    private sealed class Rewriter(bool split) : ExpressionVisitor
    {
        protected override Expression VisitMethodCall(MethodCallExpression node)
        {
            if (!node.Method.IsGenericMethod || node.Method.GetGenericMethodDefinition() != RowLockQueryableExtensions.WithRowLockMethod)
            {
                return base.VisitMethodCall(node);
            }

            var source = Visit(node.Arguments[0]);
            if (node.Arguments[1] is not ConstantExpression { Value: RowLockClause clause })
            {
                throw new InvalidOperationException(
                    "The RowLockClause passed to WithRowLock must be known when the query is compiled (e.g. RowLockClause.ForUpdate.NoWait()); it cannot depend on a compiled query's parameters.");
            }

            var types = node.Method.GetGenericArguments();
            if (split && !types[0].IsValueType)
            {
                // AsSplitQuery needs a reference type; a query of scalars has no Include to split.
                source = Expression.Call(AsSplitQueryMethod.MakeGenericMethod(types), source);
            }

            return Expression.Call(TagWithMethod.MakeGenericMethod(types), source, Expression.Constant(RowLockTag.Encode(clause)));
        }
    }
}
