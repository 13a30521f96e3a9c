using Microsoft.EntityFrameworkCore;
using Npgsql;
using RowLock.EntityFrameworkCore;
using RowLock.Samples.Lab;
using RowLock.Samples.Scenarios;

namespace RowLock.Samples.Ef;

/// <summary><see cref="EditConflict"/> written with EF Core: same table, same verdict.</summary>
public sealed class EfEditConflict : EditConflict
{
    // Naive: load, change, SaveChanges. Each other user's UPDATE hangs behind the editor's lock, then overwrites the edit.
    protected override Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        RunAsync(dataSource, options, null, cancellationToken);

    // RowLock: WithRowLock(ForUpdate.NoWait()). The others get LockNotAvailableException at once (UserMessage for the UI)
    // and their transaction is still usable.
    protected override Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        RunAsync(dataSource, options, RowLockClause.ForUpdate.NoWait(), cancellationToken);

    private static IQueryable<Document> TheDocument(LabContext db, RowLockClause? clause)
    {
        var query = db.Documents.Where(d => d.Id == 1);
        return clause is null ? query : query.WithRowLock(clause.Value);
    }

    private static async Task<SideResult> RunAsync(NpgsqlDataSource dataSource, LabOptions options, RowLockClause? clause, CancellationToken cancellationToken)
    {
        var factory = LabContext.Factory(dataSource);
        var others = Math.Max(1, options.Workers - 1);
        var toldAtOnce = 0;
        var errors = new ErrorCounter();

        // A running application has its queries compiled long before two users collide; so here, before the editor's
        // short hold starts (EF compiles a query shape on its first use, which on a busy machine can outlast the hold).
        await using (var warm = await factory.CreateDbContextAsync(cancellationToken))
        await using (var tx = await warm.Database.BeginTransactionAsync(cancellationToken))
        {
            await TheDocument(warm, RowLockClause.ForUpdate).SingleAsync(cancellationToken);
            await TheDocument(warm, clause).SingleAsync(cancellationToken);
            await warm.Database.SqlQueryRaw<int>("SELECT 1 AS \"Value\"").SingleAsync(cancellationToken);
        }

        var (_, elapsed) = await TimeAsync(async () =>
        {
            var editing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var editor = errors.RunAsync(async () =>
            {
                try
                {
                    await using var db = await factory.CreateDbContextAsync(cancellationToken);
                    await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
                    var document = await TheDocument(db, RowLockClause.ForUpdate).SingleAsync(cancellationToken);
                    editing.SetResult();
                    await Task.Delay(EditorHolds, cancellationToken); // the user is typing
                    document.Body = "edited by the editor";
                    await db.SaveChangesAsync(cancellationToken);
                    await tx.CommitAsync(cancellationToken);
                }
                finally
                {
                    editing.TrySetResult(); // never leave the other users waiting for an editor that failed
                }
            });

            await editing.Task;
            await RaceAsync(others, user => errors.RunAsync(async () =>
            {
                await using var db = await factory.CreateDbContextAsync(cancellationToken);
                await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
                try
                {
                    var document = await TheDocument(db, clause).SingleAsync(cancellationToken);
                    document.Body = $"saved by user {user}";
                    await db.SaveChangesAsync(cancellationToken);
                    await tx.CommitAsync(cancellationToken);
                }
                catch (LockNotAvailableException e)
                {
                    // e.UserMessage: "This record is being modified by someone else; try again in a moment."
                    _ = e.UserMessage;
                    await db.Database.SqlQueryRaw<int>("SELECT 1 AS \"Value\"").SingleAsync(cancellationToken); // the transaction goes on
                    Interlocked.Increment(ref toldAtOnce);
                }
            }));
            await editor;
            return 0;
        });

        return new SideResult(errors, 0, toldAtOnce == others, $"{toldAtOnce} of {others} told at once", elapsed);
    }
}
