using Microsoft.EntityFrameworkCore;
using RowLock.EntityFrameworkCore;

namespace RowLock.WebSample;

/// <summary>EF Core: the aggregate root is read with FOR UPDATE, so concurrent additions never overwrite each other.</summary>
public static class OrderEndpoints
{
    public sealed record AddLineRequest(decimal Amount);

    public sealed record OrderTotals(int Id, decimal Total, int LineCount);

    public static void MapOrderEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/orders/{id:int}/lines", AddLineAsync);
        app.MapGet("/orders/{id:int}", GetAsync);
    }

    private static async Task<IResult> AddLineAsync(int id, AddLineRequest line, DbContextTransactionRunner<ShopDb> runner, CancellationToken cancellationToken)
    {
        var totals = await runner.RunAsync("orders.add_line", async (db, ct) =>
        {
            var order = await db.Orders.Where(o => o.Id == id).WithRowLock(RowLockClause.ForUpdate).SingleOrDefaultAsync(ct);
            if (order is null)
            {
                return null;
            }

            order.Total += line.Amount;
            order.LineCount++;
            await db.SaveChangesAsync(ct);
            return new OrderTotals(order.Id, order.Total, order.LineCount);
        }, cancellationToken);

        return totals is null ? Results.NotFound() : Results.Ok(totals);
    }

    private static async Task<IResult> GetAsync(int id, IDbContextFactory<ShopDb> contexts, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var order = await db.Orders.AsNoTracking().SingleOrDefaultAsync(o => o.Id == id, cancellationToken);
        return order is null ? Results.NotFound() : Results.Ok(new OrderTotals(order.Id, order.Total, order.LineCount));
    }
}
