using System.Linq.Expressions;
using System.Reflection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>
/// Turns <c>WithRowLock(source, clause)</c> into a query tag before EF translates the query, for ordinary and compiled
/// queries alike (a compiled query hands EF the call itself, never running the extension method).
/// </summary>
internal sealed class RowLockQueryExpressionInterceptor : IQueryExpressionInterceptor
{
    public static readonly RowLockQueryExpressionInterceptor Instance = new();

    private static readonly MethodInfo TagWithMethod = typeof(EntityFrameworkQueryableExtensions)
        .GetMethods(BindingFlags.Public | BindingFlags.Static)
        .Single(m => m.Name == nameof(EntityFrameworkQueryableExtensions.TagWith) && m.GetParameters().Length == 2);

    public Expression QueryCompilationStarting(Expression queryExpression, QueryExpressionEventData eventData) =>
        new Rewriter().Visit(queryExpression);

    private sealed class Rewriter : ExpressionVisitor
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

            return Expression.Call(TagWithMethod.MakeGenericMethod(node.Method.GetGenericArguments()), source, Expression.Constant(RowLockTag.Encode(clause)));
        }
    }
}
