using Dapper;
using Npgsql;
using RowLock.Samples.Lab;

namespace RowLock.Samples.Scenarios;

/// <summary>A user saves a record another user is editing (holding it locked for a while).</summary>
public class EditConflict : Scenario
{
    protected static readonly TimeSpan EditorHolds = TimeSpan.FromMilliseconds(200);

    public override string Name => "edit-conflict";

    public override string Invariant => "every other user is told at once and can carry on";

    protected override Task SetUpAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        dataSource.CreateCommand("DROP TABLE IF EXISTS documents; CREATE TABLE documents (id int PRIMARY KEY, body text NOT NULL); INSERT INTO documents VALUES (1, 'draft');")
            .ExecuteNonQueryAsync(cancellationToken);

    // Naive: a plain FOR UPDATE. The other users' requests hang until the editor is done, then overwrite the edit.
    protected override Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        RunAsync(dataSource, options, RowLockClause.ForUpdate, cancellationToken);

    // RowLock: FOR UPDATE NOWAIT. The others get LockNotAvailableException at once, whose UserMessage a UI can show as is,
    // and their transaction is still usable (RowLock rolled back to a savepoint), so they can save a draft or report.
    protected override Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        RunAsync(dataSource, options, RowLockClause.ForUpdate.NoWait(), cancellationToken);

    private static async Task<SideResult> RunAsync(NpgsqlDataSource dataSource, LabOptions options, RowLockClause clause, CancellationToken cancellationToken)
    {
        var others = Math.Max(1, options.Workers - 1);
        var toldAtOnce = 0;
        var errors = new ErrorCounter();
        var (_, elapsed) = await TimeAsync(async () =>
        {
            var editing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var editor = errors.RunAsync(async () =>
            {
                try
                {
                    await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
                    await using var tx = await connection.BeginTransactionAsync(cancellationToken);
                    await tx.LockRowsAsync<string>("SELECT body FROM documents WHERE id = 1", null, RowLockClause.ForUpdate, cancellationToken);
                    editing.SetResult();
                    await Task.Delay(EditorHolds, cancellationToken); // the user is typing
                    await connection.ExecuteAsync("UPDATE documents SET body = 'edited by the editor' WHERE id = 1", transaction: tx);
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
                await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
                await using var tx = await connection.BeginTransactionAsync(cancellationToken);
                try
                {
                    await tx.LockRowsAsync<string>("SELECT body FROM documents WHERE id = @id", new { id = 1 }, clause, cancellationToken);
                    await connection.ExecuteAsync("UPDATE documents SET body = @body WHERE id = 1", new { body = $"saved by user {user}" }, tx);
                    await tx.CommitAsync(cancellationToken);
                }
                catch (LockNotAvailableException e)
                {
                    // e.UserMessage: "This record is being modified by someone else; try again in a moment."
                    _ = e.UserMessage;
                    await connection.ExecuteAsync("SELECT 1", transaction: tx); // the transaction goes on
                    Interlocked.Increment(ref toldAtOnce);
                }
            }));
            await editor;
            return 0;
        });

        return new SideResult(errors, 0, toldAtOnce == others, $"{toldAtOnce} of {others} told at once", elapsed);
    }
}
