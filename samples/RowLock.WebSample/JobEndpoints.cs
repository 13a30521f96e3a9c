namespace RowLock.WebSample;

/// <summary>A job queue on a plain table: each call claims free jobs with SKIP LOCKED, so no two callers get the same job.</summary>
public static class JobEndpoints
{
    public sealed record Job(long Id, string Payload);

    public static void MapJobEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/jobs/claim", ClaimAsync);
    }

    private static async Task<IResult> ClaimAsync(TransactionRunner runner, CancellationToken cancellationToken, int limit = 1, string worker = "web")
    {
        if (limit is < 1 or > 100)
        {
            return Results.ValidationProblem(new Dictionary<string, string[]> { ["limit"] = ["Claim between 1 and 100 jobs."] });
        }

        var claimed = await runner.RunAsync("jobs.claim", async (tx, ct) =>
        {
            var jobs = await tx.ClaimRowsAsync<Job>("SELECT id, payload FROM jobs WHERE done_at IS NULL ORDER BY id", null, limit, ct);
            if (jobs.Count > 0)
            {
                // Marking them done travels with COMMIT; a crash before it leaves them free for the next caller.
                tx.DeferUntilCommit(
                    "UPDATE jobs SET done_at = now(), done_by = @worker WHERE id = ANY(@ids)",
                    new { worker, ids = jobs.Select(job => job.Id).ToArray() });
            }

            return jobs;
        }, cancellationToken);

        return Results.Ok(claimed);
    }
}
