using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>What the runner writes to the logger it was given: one short line per routine retry, details at Debug, never a failure of its own.</summary>
public sealed class RunnerLoggingTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private const string RaiseSerializationFailure = "DO $$ BEGIN RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure'; END $$";

    private TransactionRunner Runner(ILogger<TransactionRunner> logger, int maxRetryAttempts = 3) =>
        new(db.DataSource, new TransactionRunnerOptions { TimeProvider = new InstantTimeProvider(), Retry = { MaxRetryAttempts = maxRetryAttempts } }, logger);

    [Fact]
    public async Task Each_routine_retry_is_one_short_line_without_a_stack_trace()
    {
        var logger = new RecordingLogger<TransactionRunner>(LogLevel.Information);
        var runs = 0;
        await Runner(logger).RunAsync(async (tx, ct) =>
        {
            if (++runs <= 3)
            {
                await tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx);
            }
        });

        var entries = logger.Entries.ToArray();
        Assert.Equal(3, entries.Length);
        Assert.All(entries, e =>
        {
            Assert.Equal(LogLevel.Information, e.Level);
            Assert.Equal(RowLockEventIds.UnitOfWorkRetrying, e.EventId.Id);
            Assert.Null(e.Exception);
            Assert.InRange(e.StoredLength, 1, 200);
        });
        Assert.Matches("^Unit of work attempt 1 failed with 40001; retrying in [0-9.]+ ms$", entries[0].Message);
    }

    [Fact]
    public async Task The_exception_of_each_retry_is_kept_at_debug_and_exhaustion_is_one_error_with_the_exception()
    {
        var logger = new RecordingLogger<TransactionRunner>(LogLevel.Debug);
        await Assert.ThrowsAsync<RetryLimitExceededException>(() =>
            Runner(logger, maxRetryAttempts: 2).RunAsync((tx, ct) => tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx)));

        var entries = logger.Entries.ToArray();
        var details = entries.Where(e => e.EventId.Id == RowLockEventIds.UnitOfWorkRetryDetail).ToArray();
        Assert.Equal(2, details.Length);
        Assert.All(details, e =>
        {
            Assert.Equal(LogLevel.Debug, e.Level);
            Assert.Equal(PostgresErrorCodes.SerializationFailure, Assert.IsType<PostgresException>(e.Exception).SqlState);
        });
        var exhausted = Assert.Single(entries, e => e.Level >= LogLevel.Warning);
        Assert.Equal(LogLevel.Error, exhausted.Level);
        Assert.Equal(RowLockEventIds.UnitOfWorkRetriesExhausted, exhausted.EventId.Id);
        Assert.IsType<PostgresException>(exhausted.Exception);
        Assert.Equal("Unit of work failed 3 times, last with 40001; giving up", exhausted.Message);
    }

    [Fact]
    public async Task Sixty_eight_retries_at_information_stay_small()
    {
        var logger = new RecordingLogger<TransactionRunner>(LogLevel.Information);
        var runner = Runner(logger, maxRetryAttempts: 4);
        for (var unit = 0; unit < 17; unit++)
        {
            var runs = 0;
            await runner.RunAsync(async (tx, ct) =>
            {
                if (++runs <= 4)
                {
                    await tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx);
                }
            });
        }

        Assert.Equal(68, logger.Entries.Count);
        Assert.InRange(logger.Entries.Sum(e => e.StoredLength), 1, 68 * 200); // 206 KB before: a 3 KB stack trace per retry
    }

    [Fact]
    public async Task A_throwing_logger_never_fails_a_unit_of_work()
    {
        var logger = new ThrowingLogger<TransactionRunner>();
        var runs = 0;
        var result = await Runner(logger).RunAsync(async (tx, ct) =>
        {
            if (++runs <= 2)
            {
                await tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx);
            }

            return runs;
        });
        Assert.Equal(3, result);
        Assert.True(logger.Calls > 0);

        var error = await Assert.ThrowsAsync<RetryLimitExceededException>(() =>
            Runner(logger, maxRetryAttempts: 1).RunAsync((tx, ct) => tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx)));
        Assert.Equal(2, error.Attempts);
    }

    [Fact]
    public async Task A_hand_built_runner_logs_to_the_logger_it_was_given()
    {
        var logger = new RecordingLogger<TransactionRunner>();
        var runs = 0;
        await Runner(logger).RunAsync(async (tx, ct) =>
        {
            if (++runs == 1)
            {
                await tx.Connection!.ExecuteAsync(RaiseSerializationFailure, transaction: tx);
            }
        });
        Assert.Contains(logger.Entries, e => e.EventId.Id == RowLockEventIds.UnitOfWorkRetrying);
    }

    [Fact]
    public void Runner_event_ids_are_public_constants()
    {
        Assert.Equal(200, RowLockEventIds.UnitOfWorkRetrying);
        Assert.Equal(201, RowLockEventIds.UnitOfWorkRetriesExhausted);
        Assert.Equal(202, RowLockEventIds.UnitOfWorkCommitOutcomeUnknown);
        Assert.Equal(203, RowLockEventIds.UnitOfWorkRetryDetail);
    }
}
