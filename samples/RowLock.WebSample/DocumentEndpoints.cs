namespace RowLock.WebSample;

/// <summary>Editing a document: fail fast with 409 when someone else is saving it (NOWAIT), instead of queueing.</summary>
public static class DocumentEndpoints
{
    public sealed record EditRequest(string Body);

    public sealed record DocumentVersion(int Id, int Version);

    public static void MapDocumentEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPut("/documents/{id:int}", EditAsync);
    }

    private static async Task<IResult> EditAsync(int id, EditRequest edit, TransactionRunner runner, CancellationToken cancellationToken)
    {
        try
        {
            var version = await runner.RunAsync("documents.edit", async (tx, ct) =>
            {
                var current = await tx.LockRowsAsync<int>(
                    "SELECT version FROM documents WHERE id = @id", new { id }, RowLockClause.ForUpdate.NoWait(), ct);
                if (current.Count == 0)
                {
                    return (int?)null;
                }

                tx.DeferUntilCommit("UPDATE documents SET body = @body, version = version + 1 WHERE id = @id", new { body = edit.Body, id });
                return current[0] + 1;
            }, cancellationToken);

            return version is null ? Results.NotFound() : Results.Ok(new DocumentVersion(id, version.Value));
        }
        catch (LockNotAvailableException conflict)
        {
            // Not retried by default: the user decides whether to save again. UserMessage is written for them.
            return Results.Problem(conflict.UserMessage, statusCode: StatusCodes.Status409Conflict);
        }
    }
}
