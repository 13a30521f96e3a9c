using System.Data;
using Dapper;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>The runner takes a snapshot of its options when it is built: changing them later changes nothing, half-way or whole.</summary>
public sealed class TransactionRunnerOptionsTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private const string RaiseSerializationFailure = "DO $$ BEGIN RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure'; END $$";

    [Fact]
    public async Task Raising_MaxRetryAttempts_after_construction_still_ends_in_RetryLimitExceededException()
    {
        var options = new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider(), Retry = { MaxRetryAttempts = 2 } };
        var runner = new TransactionRunner(db.DataSource, options);
        options.Retry.MaxRetryAttempts = 10;
        var runs = 0;

        var error = await Assert.ThrowsAsync<RetryLimitExceededException>(() => runner.RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx);
        }));

        Assert.Equal(3, runs);
        Assert.Equal(3, error.Attempts);
    }

    [Fact]
    public async Task Lowering_MaxRetryAttempts_after_construction_does_not_turn_a_raw_error_into_exhaustion()
    {
        var options = new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider(), Retry = { MaxRetryAttempts = 5 } };
        var runner = new TransactionRunner(db.DataSource, options);
        options.Retry.MaxRetryAttempts = 1;
        var runs = 0;

        await runner.RunAsync(async (tx, ct) =>
        {
            if (++runs <= 3)
            {
                await tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx);
            }
        });

        Assert.Equal(4, runs);
    }

    [Fact]
    public async Task Changing_the_retry_flags_or_isolation_level_after_construction_changes_nothing()
    {
        var options = new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider(), IsolationLevel = IsolationLevel.RepeatableRead };
        var runner = new TransactionRunner(db.DataSource, options);
        options.IsolationLevel = IsolationLevel.Serializable;
        options.Retry.RetryOnLockNotAvailable = true;
        var runs = 0;

        Assert.Equal("repeatable read", await runner.RunAsync((tx, ct) => tx.Connection!.ExecuteScalarAsync<string>("SHOW transaction_isolation", transaction: tx)));
        await Assert.ThrowsAsync<LockNotAvailableException>(() => runner.RunAsync((tx, ct) =>
        {
            runs++;
            throw new LockNotAvailableException();
        }));
        Assert.Equal(1, runs);
        Assert.Equal(IsolationLevel.RepeatableRead, runner.Options.IsolationLevel);
        Assert.False(runner.Options.Retry.RetryOnLockNotAvailable);
    }

    [Fact]
    public async Task A_user_OnRetry_and_every_retry_option_still_apply()
    {
        var clock = new InstantTimeProvider();
        var seen = new List<int>();
        var options = new TransactionRunnerOptions
        {
            TimeProvider = clock,
            Retry =
            {
                MaxRetryAttempts = 3,
                BackoffType = Polly.DelayBackoffType.Constant,
                UseJitter = false,
                Delay = TimeSpan.FromMilliseconds(7),
                OnRetry = args =>
                {
                    seen.Add(args.AttemptNumber);
                    return default;
                },
            },
        };

        await Assert.ThrowsAsync<RetryLimitExceededException>(() => new TransactionRunner(db.DataSource, options)
            .RunAsync((tx, ct) => tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx)));

        Assert.Equal([0, 1, 2], seen);
        Assert.Equal([7, 7, 7], clock.Delays.Select(d => d.TotalMilliseconds));
    }

    [Fact]
    public void The_runner_rejects_null_retry_options_and_clock()
    {
        Assert.Throws<ArgumentNullException>(() => new TransactionRunner(db.DataSource, new TransactionRunnerOptions { Retry = null! }));
        Assert.Throws<ArgumentNullException>(() => new TransactionRunner(db.DataSource, new TransactionRunnerOptions { TimeProvider = null! }));
    }

    [Fact]
    public async Task A_user_predicate_that_retries_everything_still_never_retries_an_unknown_commit()
    {
        var options = new TransactionRunnerOptions
        {
            TimeProvider = new InstantTimeProvider(),
            Retry = { ShouldHandle = _ => ValueTask.FromResult(true) }, // "retry every exception"
        };
        var runner = new TransactionRunner(db.DataSource, options);
        var runs = 0;

        var unknown = new CommitOutcomeUnknownException(new IOException("connection reset during COMMIT"));
        var error = await Assert.ThrowsAsync<CommitOutcomeUnknownException>(() => runner.RunAsync((tx, ct) =>
        {
            runs++;
            throw unknown;
        }));

        Assert.Same(unknown, error);
        Assert.Equal(1, runs);
    }

    [Fact]
    public async Task A_user_predicate_on_results_still_retries_a_first_attempt_that_returned()
    {
        // The runner runs the first attempt outside Polly; a result the user's predicate handles must still go to Polly.
        var seen = new List<int>();
        var options = new TransactionRunnerOptions
        {
            TimeProvider = new InstantTimeProvider(),
            Retry =
            {
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result is int n && n < 3),
                OnRetry = args =>
                {
                    seen.Add(args.AttemptNumber);
                    return default;
                },
            },
        };
        var runs = 0;

        var result = await new TransactionRunner(db.DataSource, options).RunAsync((tx, ct) => Task.FromResult(++runs));

        Assert.Equal(3, result);
        Assert.Equal(3, runs);
        Assert.Equal([0, 1], seen);
    }

    [Fact]
    public async Task A_user_predicate_that_handles_no_result_ends_the_run_on_the_first_attempt()
    {
        var options = new TransactionRunnerOptions
        {
            TimeProvider = new InstantTimeProvider(),
            Retry = { ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is not null) },
        };
        var runs = 0;

        Assert.Equal(1, await new TransactionRunner(db.DataSource, options).RunAsync((tx, ct) => Task.FromResult(++runs)));
        Assert.Equal(1, runs);
    }

    [Fact]
    public async Task A_first_attempt_that_fails_is_retried_with_Pollys_attempt_numbers_and_counted_in_the_exhaustion()
    {
        var seen = new List<int>();
        var options = new TransactionRunnerOptions
        {
            TimeProvider = new InstantTimeProvider(),
            Retry =
            {
                MaxRetryAttempts = 1,
                OnRetry = args =>
                {
                    seen.Add(args.AttemptNumber);
                    return default;
                },
            },
        };
        var runs = 0;

        var error = await Assert.ThrowsAsync<RetryLimitExceededException>(() => new TransactionRunner(db.DataSource, options).RunAsync(async (tx, ct) =>
        {
            runs++;
            await tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx);
        }));

        Assert.Equal(2, runs);
        Assert.Equal(2, error.Attempts);
        Assert.Equal([0], seen);
    }

    [Fact]
    public async Task A_token_cancelled_before_the_call_runs_no_attempt()
    {
        var runs = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => new TransactionRunner(db.DataSource).RunAsync((tx, ct) =>
        {
            runs++;
            return Task.CompletedTask;
        }, new CancellationToken(canceled: true)));
        Assert.Equal(0, runs);
    }
}
