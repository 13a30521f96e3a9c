using System.ComponentModel.DataAnnotations;
using System.Net;
using System.Net.Sockets;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// The runner's client-side behaviour, with no server: the data source points at a closed 127.0.0.1 port, so every
/// attempt fails to open its connection, a certain "nothing sent" that the runner retries whole. What needs a server
/// (the work running, nesting, COMMIT) is proven in TransactionRunnerTests and TransactionRunnerContract.
/// </summary>
public sealed class TransactionRunnerWithoutServerTests : IAsyncDisposable
{
    private readonly NpgsqlDataSource _nowhere = NpgsqlDataSource.Create($"Host=127.0.0.1;Port={ClosedPort()};Username=nobody;Timeout=5");

    public ValueTask DisposeAsync() => _nowhere.DisposeAsync();

    // A port that was free a moment ago and that nothing listens on now.
    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [Fact]
    public async Task A_null_work_delegate_is_an_argument_error()
    {
        await Assert.ThrowsAsync<ArgumentNullException>(() => new TransactionRunner(_nowhere).RunAsync(null!));
        await Assert.ThrowsAsync<ArgumentNullException>(() => new TransactionRunner(_nowhere).RunAsync<int>(null!));
        Assert.Throws<ArgumentNullException>(() => new TransactionRunner(null!));
    }

    [Fact]
    public void Out_of_range_retry_options_fail_with_pollys_validation_message()
    {
        var options = new TransactionRunnerOptions { Retry = { MaxRetryAttempts = 0 } };
        var error = Assert.Throws<ValidationException>(() => new TransactionRunner(_nowhere, options));
        Assert.Contains("The field MaxRetryAttempts must be between 1 and 2147483647.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unreachable_server_is_retried_and_exhaustion_carries_the_last_open_failure()
    {
        var failures = new List<Exception>();
        var options = new TransactionRunnerOptions
        {
            TimeProvider = new InstantTimeProvider(),
            Retry =
            {
                MaxRetryAttempts = 3,
                OnRetry = args =>
                {
                    failures.Add(args.Outcome.Exception!);
                    return default;
                },
            },
        };
        var worked = false;

        var error = await Assert.ThrowsAsync<RetryLimitExceededException>(() => new TransactionRunner(_nowhere, options).RunAsync((tx, ct) =>
        {
            worked = true;
            return Task.CompletedTask;
        }));

        Assert.False(worked);
        Assert.Equal(4, error.Attempts);
        Assert.Null(error.SqlState);
        Assert.Contains("failed 4 times; the last failure was a lost connection", error.Message, StringComparison.Ordinal);
        Assert.True(error.IsTransient);

        // The inner exception is the fourth failure, not one of the three that were retried: Npgsql's own "refused"
        // (a SocketException inside), which is a connection loss as it is.
        var last = Assert.IsAssignableFrom<NpgsqlException>(error.InnerException);
        Assert.IsAssignableFrom<SocketException>(last.InnerException);
        Assert.True(RowLockPredicates.IsConnectionLoss(last));
        Assert.Equal(3, failures.Count);
        Assert.All(failures, f => Assert.IsAssignableFrom<NpgsqlException>(f));
        Assert.DoesNotContain(last, failures);
    }

    [Fact]
    public async Task Options_changed_after_construction_change_nothing_even_before_a_connection_opens()
    {
        var clock = new InstantTimeProvider();
        var laterClock = new InstantTimeProvider();
        var laterRetries = 0;
        var options = new TransactionRunnerOptions { TimeProvider = clock, Retry = { MaxRetryAttempts = 2 } };
        var runner = new TransactionRunner(_nowhere, options);
        options.Retry.MaxRetryAttempts = 10;
        options.Retry.OnRetry = _ =>
        {
            laterRetries++;
            return default;
        };
        options.TimeProvider = laterClock;

        var error = await Assert.ThrowsAsync<RetryLimitExceededException>(() => runner.RunAsync((tx, ct) => Task.CompletedTask));

        Assert.Equal(3, error.Attempts);
        Assert.Equal(2, runner.Options.Retry.MaxRetryAttempts);
        Assert.Equal(2, clock.Delays.Count);
        Assert.Empty(laterClock.Delays);
        Assert.Equal(0, laterRetries);
    }

    [Fact]
    public async Task Backoff_delays_grow_as_configured_and_each_retry_waits_for_the_clock()
    {
        var clock = new ObservedFakeClock();
        var started = clock.Fake.GetUtcNow();
        var retries = 0;
        var options = new TransactionRunnerOptions
        {
            TimeProvider = clock,
            Retry =
            {
                MaxRetryAttempts = 4,
                Delay = TimeSpan.FromSeconds(1),
                MaxDelay = TimeSpan.FromSeconds(5),
                UseJitter = false,
                OnRetry = _ =>
                {
                    Interlocked.Increment(ref retries);
                    return default;
                },
            },
        };

        var run = new TransactionRunner(_nowhere, options).RunAsync((tx, ct) => Task.CompletedTask);

        // Exponential from 1 s, capped at 5 s. Each retry is announced, then waits on its timer until the clock moves.
        double[] expected = [1, 2, 4, 5];
        for (var i = 0; i < expected.Length; i++)
        {
            var delay = await clock.NextTimerAsync();
            Assert.Equal(expected[i], delay.TotalSeconds);
            Assert.Equal(i + 1, Volatile.Read(ref retries));
            Assert.False(run.IsCompleted);
            clock.Fake.Advance(delay);
        }

        var error = await Assert.ThrowsAsync<RetryLimitExceededException>(() => run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(5, error.Attempts);
        Assert.Equal(TimeSpan.FromSeconds(12), clock.Fake.GetUtcNow() - started);
    }
}
