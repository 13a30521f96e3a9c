using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// Adversarial tests for the runner's client path (first attempt outside Polly, its outcome handed to Polly as attempt
/// 0): each one failed on the first version of that path (cec4e68) and passed before it; the retrier now keeps them.
/// </summary>
public sealed class RunnerFastPathAdversarialTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    // ---- 1. The first attempt's failure, handed to Polly, must not be replaced by OperationCanceledException when the
    //         caller's token was cancelled while that attempt ran (Polly checks the token before it runs anything, and so
    //         ends the run without looking at the handed-over outcome).

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

    // ---- 2. A user ShouldHandle predicate is asked once per attempt, the first attempt's result included.

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
}
