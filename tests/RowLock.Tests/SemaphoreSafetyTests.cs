using System.Diagnostics;
using Dapper;
using RowLock.Tests.Infrastructure;
using Xunit.Abstractions;

namespace RowLock.Tests;

/// <summary>
/// The ways a semaphore slot or its turnstile could outlive the caller that gave up on it: a timeout or a cancellation
/// racing the release that frees a slot, in session and transaction scope. After every race pg_locks must show nothing
/// of the semaphore once nobody holds a handle or an open transaction.
/// </summary>
public sealed class SemaphoreSafetyTests(DatabaseFixture db, ITestOutputHelper output) : IClassFixture<DatabaseFixture>
{
    private const int Races = 250;

    /// <summary>Fewer cancellation races: each cancel costs a cancel request on a connection of its own.</summary>
    private static int RacesFor(string giveUp) => giveUp == "cancel" ? 120 : Races;
    private static readonly TimeSpan RaceTimeout = TimeSpan.FromMilliseconds(10);

    private static SemaphoreKey UniqueSemaphore() => SemaphoreKey.FromName("semaphore-safety-" + Guid.NewGuid());

    /// <summary>Releases the holder's slot about when the waiter gives up: sometimes before, sometimes just after.</summary>
    private static async Task ReleaseNearTheTimeoutAsync(AdvisoryLockHandle holder, int race)
    {
        var releaseAt = TimeSpan.FromMilliseconds(5 + (race % 11)); // 5..15 ms around a 10 ms timeout
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < releaseAt)
        {
            await Task.Yield();
        }

        await holder.DisposeAsync();
    }

    private Task<long> LocksOfAsync(SemaphoreKey semaphore) => db.ScalarAsync<long>(SemaphoreTests.AnyLockSql(semaphore));

    /// <summary>One waiter plus a second queued behind it, so that the turnstile is handed over during the race too.</summary>
    [Theory]
    [InlineData("timeout")]
    [InlineData("cancel")]
    public async Task Hundreds_of_session_waits_racing_a_release_leak_no_slot_and_no_turnstile(string giveUp)
    {
        var semaphore = UniqueSemaphore();
        int granted = 0, refused = 0, leaked = 0;
        await using var pool = db.CreateDataSource(_ => { });
        for (var race = 0; race < RacesFor(giveUp); race++)
        {
            var holder = await pool.AcquireSemaphoreAsync(semaphore, 1);
            using var cancel = new CancellationTokenSource();
            var attempt = giveUp == "timeout"
                ? pool.TryAcquireSemaphoreAsync(semaphore, 1, RaceTimeout)
                : CancelledToNull(pool.TryAcquireSemaphoreAsync(semaphore, 1, Timeout.InfiniteTimeSpan, cancel.Token));
            var behind = pool.TryAcquireSemaphoreAsync(semaphore, 1, RaceTimeout);
            if (giveUp == "cancel")
            {
                cancel.CancelAfter(RaceTimeout);
            }

            await ReleaseNearTheTimeoutAsync(holder, race);
            foreach (var handle in await Task.WhenAll(attempt, behind))
            {
                if (handle is not null)
                {
                    granted++;
                    await handle.DisposeAsync();
                }
                else
                {
                    refused++;
                }
            }

            if (await LocksOfAsync(semaphore) > 0)
            {
                leaked++;
                pool.Clear();
            }
        }

        output.WriteLine($"{RacesFor(giveUp)} session races ({giveUp}): {granted} granted, {refused} refused, {leaked} leaked.");
        Assert.True(granted > 0 && refused > 0, $"The races should go both ways: {granted} granted, {refused} refused.");
        Assert.Equal(0, leaked);
    }

    [Theory]
    [InlineData("timeout")]
    [InlineData("cancel")]
    public async Task Hundreds_of_transaction_waits_racing_a_release_leak_no_slot_and_no_turnstile(string giveUp)
    {
        var semaphore = UniqueSemaphore();
        int granted = 0, refused = 0, heldAfterRefusal = 0, leaked = 0;
        await using var pool = db.CreateDataSource(_ => { });
        await using var waiter = await pool.OpenConnectionAsync();
        for (var race = 0; race < RacesFor(giveUp); race++)
        {
            var holder = await pool.AcquireSemaphoreAsync(semaphore, 1);
            await using var tx = await waiter.BeginTransactionAsync();
            using var cancel = new CancellationTokenSource();
            var attempt = giveUp == "timeout"
                ? tx.TryAcquireSemaphoreAsync(semaphore, 1, RaceTimeout)
                : tx.TryAcquireSemaphoreAsync(semaphore, 1, Timeout.InfiniteTimeSpan, cancel.Token);
            if (giveUp == "cancel")
            {
                cancel.CancelAfter(RaceTimeout);
            }

            await ReleaseNearTheTimeoutAsync(holder, race);
            int? slot = null;
            try
            {
                slot = await attempt;
            }
            catch (OperationCanceledException)
            {
            }

            if (slot is not null)
            {
                granted++;
            }
            else
            {
                refused++;
                if (waiter.State == System.Data.ConnectionState.Open && !tx.IsCompleted())
                {
                    // A cancelled statement leaves the transaction aborted: then it holds nothing it can use either.
                    try
                    {
                        if (await waiter.ExecuteScalarAsync<long>($"SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND classid = {(uint)semaphore.ClassId}", transaction: tx) > 0)
                        {
                            heldAfterRefusal++;
                        }
                    }
                    catch (Npgsql.PostgresException e) when (e.SqlState == Npgsql.PostgresErrorCodes.InFailedSqlTransaction)
                    {
                    }
                }
            }

            await tx.RollbackAsync();
            if (await LocksOfAsync(semaphore) > 0)
            {
                leaked++;
                pool.Clear();
            }
        }

        output.WriteLine($"{RacesFor(giveUp)} transaction races ({giveUp}): {granted} granted, {refused} refused, {heldAfterRefusal} held after refusal, {leaked} leaked.");
        Assert.True(granted > 0 && refused > 0, $"The races should go both ways: {granted} granted, {refused} refused.");
        Assert.Equal(0, heldAfterRefusal);
        Assert.Equal(0, leaked);
    }

    private static async Task<AdvisoryLockHandle?> CancelledToNull(Task<AdvisoryLockHandle?> attempt)
    {
        try
        {
            return await attempt;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }
}

internal static class TransactionTestExtensions
{
    public static bool IsCompleted(this Npgsql.NpgsqlTransaction transaction)
    {
        try
        {
            _ = transaction.IsolationLevel;
            return transaction.Connection is null;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }
}
