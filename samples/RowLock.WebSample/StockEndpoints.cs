namespace RowLock.WebSample;

/// <summary>Selling stock: lock the row, check, and send the update with COMMIT (one round trip for both).</summary>
public static class StockEndpoints
{
    public sealed record SellRequest(int Quantity);

    public sealed record StockLevel(int Id, int Qty);

    public static void MapStockEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/stock/{id:int}/sell", SellAsync);
    }

    private static async Task<IResult> SellAsync(int id, SellRequest request, TransactionRunner runner, CancellationToken cancellationToken)
    {
        if (request.Quantity <= 0)
        {
            return Results.ValidationProblem(new Dictionary<string, string[]> { ["quantity"] = ["Sell at least one unit."] });
        }

        // Retried whole on 40001 / 40P01; the lock is taken before the read, so the check below sees the latest quantity.
        var remaining = await runner.RunAsync("stock.sell", async (tx, ct) =>
        {
            var qty = await tx.LockRowsAsync<int>("SELECT qty FROM stock WHERE id = @id", new { id }, RowLockClause.ForUpdate, ct);
            if (qty.Count == 0 || qty[0] < request.Quantity)
            {
                return qty.Count == 0 ? (int?)null : -1;
            }

            tx.DeferUntilCommit("UPDATE stock SET qty = qty - @quantity WHERE id = @id", new { quantity = request.Quantity, id });
            return qty[0] - request.Quantity;
        }, cancellationToken);

        return remaining switch
        {
            null => Results.NotFound(),
            -1 => Results.Problem("Not enough stock.", statusCode: StatusCodes.Status409Conflict),
            _ => Results.Ok(new StockLevel(id, remaining.Value)),
        };
    }
}
