using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Adversarial tests for the runner's client path of cec4e68 (first attempt outside Polly, commit batch on the
/// connection's cached NpgsqlBatch): each one shows a behaviour that changed for the worse.
/// </summary>
public sealed class RunnerFastPathAdversarialTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    // ---- 1. The first attempt's failure, replayed into Polly, is replaced by OperationCanceledException when the
    //         caller's token was cancelled while that attempt ran (Polly checks the token before every callback,
    //         including the one that only hands back the replayed outcome).

    [Fact]
    public async Task An_unknown_commit_outcome_is_not_turned_into_a_cancellation_when_the_caller_cancelled_during_the_attempt()
    {
        var runner = new TransactionRunner(db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() });
        using var cts = new CancellationTokenSource();
        var unknown = new CommitOutcomeUnknownException(new IOException("connection reset during COMMIT"));
        var runs = 0;

        // The caller gives up (e.g. the HTTP request is aborted) while the attempt is committing; the COMMIT is never
        // cancelled, and its outcome turns out unknown. The caller must learn that the work MAY have committed.
        var error = await Record.ExceptionAsync(() => runner.RunAsync((tx, ct) =>
        {
            runs++;
            cts.Cancel();
            throw unknown;
        }, cts.Token));

        Assert.Same(unknown, error);
        Assert.Equal(1, runs);
    }

    [Fact]
    public async Task The_works_own_database_error_is_not_turned_into_a_cancellation_when_the_caller_cancelled_during_the_attempt()
    {
        var table = await db.CreateHotRowTableAsync("fp_dup");
        var runner = new TransactionRunner(db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() });
        using var cts = new CancellationTokenSource();

        var error = await Record.ExceptionAsync(() => runner.RunAsync(async (tx, ct) =>
        {
            try
            {
                await tx.Connection!.ExecuteAsync($"INSERT INTO {table} VALUES (1, 1)", transaction: tx); // 23505
            }
            finally
            {
                cts.Cancel(); // the caller gives up at the same moment
            }
        }, cts.Token));

        var pg = Assert.IsType<PostgresException>(error);
        Assert.Equal(PostgresErrorCodes.UniqueViolation, pg.SqlState);
    }

    // ---- 2. A user ShouldHandle predicate is asked twice about the first attempt's result.

    [Fact]
    public async Task A_user_ShouldHandle_is_asked_once_per_attempt_about_a_result()
    {
        var asked = new List<int>();
        var options = new TransactionRunnerOptions
        {
            TimeProvider = new InstantTimeProvider(),
            Retry =
            {
                ShouldHandle = args =>
                {
                    if (args.Outcome.Exception is null)
                    {
                        lock (asked)
                        {
                            asked.Add(args.AttemptNumber);
                        }
                    }

                    return ValueTask.FromResult(args.Outcome.Result is int n && n < 2);
                },
            },
        };
        var runs = 0;

        var result = await new TransactionRunner(db.DataSource, options).RunAsync((tx, ct) => Task.FromResult(++runs));

        Assert.Equal(2, result);
        Assert.Equal([0, 1], asked);
    }

    // ---- 3. The commit batch (and LockRowsAsync's batch) is now the connection's cached NpgsqlBatch, which keeps the
    //         settings of whoever used it last: a batch Timeout the work set on its own batch now applies to COMMIT.

    [Fact]
    public async Task A_timeout_the_work_set_on_its_own_batch_does_not_apply_to_the_runners_commit()
    {
        var table = await db.CreateHotRowTableAsync("fp_commit_timeout");
        var runner = new TransactionRunner(db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() });
        var runs = 0;

        await runner.RunAsync(async (tx, ct) =>
        {
            runs++;
            await WorksOwnBatchWithShortTimeoutAsync(tx, ct);

            // Takes longer than the work's own 1 s batch timeout, well within Npgsql's default 30 s.
            tx.DeferUntilCommit($"UPDATE {table} SET v = v + 1 WHERE id = 1 AND (SELECT true FROM pg_sleep(3))");
        });

        Assert.Equal(1, runs);
        Assert.Equal(1, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task A_timeout_the_caller_set_on_its_own_batch_does_not_apply_to_ExecuteAndCommitAsync()
    {
        var table = await db.CreateHotRowTableAsync("fp_eac_timeout");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await WorksOwnBatchWithShortTimeoutAsync(tx, default);

        var rows = await tx.ExecuteAndCommitAsync($"UPDATE {table} SET v = v + 1 WHERE id = 1 AND (SELECT true FROM pg_sleep(3))");

        Assert.Equal(1, rows);
        Assert.Equal(1, await db.ScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1"));
    }

    [Fact]
    public async Task A_timeout_the_work_set_on_its_own_batch_does_not_apply_to_a_waiting_LockRowsAsync()
    {
        var table = await db.CreateHotRowTableAsync("fp_lock_timeout");
        var runner = new TransactionRunner(db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider() });

        // Another session holds the row: the runner's LockRowsAsync (plain FOR UPDATE: wait as long as it takes) waits.
        await using var blocker = await db.DataSource.OpenConnectionAsync();
        await using var held = await blocker.BeginTransactionAsync();
        await blocker.ExecuteAsync($"SELECT id FROM {table} WHERE id = 1 FOR UPDATE", transaction: held);

        var run = runner.RunAsync(async (tx, ct) =>
        {
            await WorksOwnBatchWithShortTimeoutAsync(tx, ct);
            var rows = await tx.LockRowsAsync<int>($"SELECT id FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate, ct);
            return rows.Count;
        });

        // Hold the row well past the work's own 1 s batch timeout (or until the run has failed), then let it go.
        await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(4)));
        await held.RollbackAsync();

        Assert.Equal(1, await run);
    }

    /// <summary>The work's own NpgsqlBatch (Npgsql's recommended way to send several statements), with a short timeout of its own, disposed.</summary>
    private static async Task WorksOwnBatchWithShortTimeoutAsync(NpgsqlTransaction tx, CancellationToken ct)
    {
        await using var batch = tx.Connection!.CreateBatch();
        batch.Transaction = tx;
        batch.Timeout = 1;
        batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT 1"));
        await batch.ExecuteNonQueryAsync(ct);
    }
}

public sealed class ZzProbeTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task Probe()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        var a = connection.CreateBatch();
        a.Timeout = 1;
        a.EnableErrorBarriers = true;
        a.Dispose();
        var b = connection.CreateBatch();
        Assert.Fail($"same={ReferenceEquals(a, b)} timeout={b.Timeout} barriers={b.EnableErrorBarriers} count={b.BatchCommands.Count}");
    }
}
