using System.Data;
using Dapper;
using Npgsql;
using RowLock.Samples.Lab;

namespace RowLock.Samples.Scenarios;

/// <summary>
/// One user has many browser tabs open; every tab sends a presence heartbeat every few hundred ms, and each heartbeat
/// updates the same presence row (the Odoo bus's <c>bus_presence</c>). Each round below is one heartbeat interval in
/// which every tab beats at once; the lab runs the rounds back to back.
/// </summary>
public sealed class PresenceHeartbeat : Scenario
{
    private const int User = 1;

    private enum Beat
    {
        Landed,
        Skipped,
        Failed,
    }

    public override string Name => "presence-heartbeat";

    public override string Invariant => "no error reaches a tab, every round refreshes the row, landed + skipped = beats";

    private static int Rounds(LabOptions options) => Math.Clamp(options.Iterations / 2, 1, 25);

    protected override Task SetUpAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        dataSource.CreateCommand("""
            DROP TABLE IF EXISTS presence;
            CREATE TABLE presence (user_id int PRIMARY KEY, last_seen timestamptz NOT NULL, beats int NOT NULL DEFAULT 0);
            INSERT INTO presence (user_id, last_seen) VALUES (1, now() - interval '1 hour');
            """).ExecuteNonQueryAsync(cancellationToken);

    // Naive: the request runs under REPEATABLE READ (as every Odoo request does), reads the presence, then updates it.
    // When two tabs beat together, the second one's UPDATE finds the row changed after its snapshot: 40001, which
    // reaches the tab as an error (and fills the server log), although losing one heartbeat would have been harmless.
    protected override async Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var errors = new ErrorCounter();
        return await RoundsAsync(dataSource, options, errors, null, cancellationToken, () => errors.RunAsync(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await using var tx = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken);
            await connection.QuerySingleAsync<DateTime>("SELECT last_seen FROM presence WHERE user_id = @user", new { user = User }, tx);
            await connection.ExecuteAsync("UPDATE presence SET last_seen = clock_timestamp(), beats = beats + 1 WHERE user_id = @user", new { user = User }, tx);
            await tx.CommitAsync(cancellationToken);
            return Beat.Landed;
        }, Beat.Failed));
    }

    // RowLock: the same REPEATABLE READ request claims the presence row with SKIP LOCKED (a one-row claim). A tab that
    // finds the row held skips its heartbeat: the tab holding it is refreshing the row right now. Nobody waits, so
    // nobody's snapshot goes stale behind a lock; the rare conflict left (the holder committed between this request's
    // snapshot and its claim) is a 40001 the runner retries whole, so no error reaches a tab.
    //
    // The runner's retries are compared in the same run with the same claim written by hand (REPEATABLE READ,
    // FOR UPDATE SKIP LOCKED, its own loop re-running on 40001): the runner should pay no retry hand-written code does not.
    protected override async Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var handWritten = await HandWrittenAsync(dataSource, options, cancellationToken);
        await SetUpAsync(dataSource, options, cancellationToken);

        var retries = new StrongBox<int>();
        var runner = CountingRunner(dataSource, retries, IsolationLevel.RepeatableRead);
        var errors = new ErrorCounter();
        var result = await RoundsAsync(dataSource, options, errors, retries, cancellationToken, () => errors.RunAsync(() => runner.RunAsync(async (tx, ct) =>
        {
            var row = await tx.ClaimRowsAsync<int>("SELECT user_id FROM presence WHERE user_id = @user", new { user = User }, limit: 1, ct);
            if (row.Count == 0)
            {
                return Beat.Skipped; // another tab is refreshing the row
            }

            await tx.Connection!.ExecuteAsync("UPDATE presence SET last_seen = clock_timestamp(), beats = beats + 1 WHERE user_id = @user", new { user = User }, tx);
            return Beat.Landed;
        }, cancellationToken), Beat.Failed));
        return result with { Detail = $"{result.Detail}; hand-written REPEATABLE READ claim, same rounds before: {handWritten.Retries} retries, {handWritten.ErrorsSurfaced} errors" };
    }

    private static async Task<SideResult> HandWrittenAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
    {
        var retries = new StrongBox<int>();
        var errors = new ErrorCounter();
        return await RoundsAsync(dataSource, options, errors, retries, cancellationToken, () => errors.RunAsync(async () =>
        {
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
                    await using var tx = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken);
                    var row = (await connection.QueryAsync<int>("SELECT user_id FROM presence WHERE user_id = @user LIMIT 1 FOR UPDATE SKIP LOCKED", new { user = User }, tx)).ToList();
                    if (row.Count > 0)
                    {
                        await connection.ExecuteAsync("UPDATE presence SET last_seen = clock_timestamp(), beats = beats + 1 WHERE user_id = @user", new { user = User }, tx);
                    }

                    await tx.CommitAsync(cancellationToken);
                    return row.Count > 0 ? Beat.Landed : Beat.Skipped;
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.SerializationFailure && attempt < 20)
                {
                    Interlocked.Increment(ref retries.Value);
                }
            }
        }, Beat.Failed));
    }

    private static async Task<SideResult> RoundsAsync(NpgsqlDataSource dataSource, LabOptions options, ErrorCounter errors, StrongBox<int>? retries,
        CancellationToken cancellationToken, Func<Task<Beat>> heartbeat)
    {
        var (landed, skipped, failed, freshRounds) = (0, 0, 0, 0);
        var elapsed = TimeSpan.Zero;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        for (var round = 0; round < Rounds(options); round++)
        {
            var roundStart = await connection.ExecuteScalarAsync<DateTime>("SELECT clock_timestamp()");
            var (beats, time) = await TimeAsync(() => RaceAsync(options.Workers, _ => heartbeat()));
            elapsed += time;
            landed += beats.Count(b => b == Beat.Landed);
            skipped += beats.Count(b => b == Beat.Skipped);
            failed += beats.Count(b => b == Beat.Failed);

            // Fresh: a heartbeat of this round landed (server clock, so no timing from this process is involved).
            if (await connection.ExecuteScalarAsync<bool>("SELECT last_seen >= @roundStart FROM presence WHERE user_id = @user", new { roundStart, user = User }))
            {
                freshRounds++;
            }
        }

        // Every landed heartbeat is in the row once: none lost, none counted that did not commit.
        var inRow = await connection.ExecuteScalarAsync<int>("SELECT beats FROM presence WHERE user_id = @user", new { user = User });
        var total = Rounds(options) * options.Workers;
        var holds = failed == 0 && landed + skipped == total && inRow == landed && freshRounds == Rounds(options);
        return new SideResult(errors, retries?.Value ?? 0, holds,
            $"{landed} landed, {skipped} skipped, {failed} failed of {total}; fresh after {freshRounds} of {Rounds(options)} rounds", elapsed);
    }
}
