using System.Diagnostics;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Diagnostics show a semaphore as one thing: name, count, holders, waiters; `rowlock key --semaphore` prints its keys.</summary>
public sealed class SemaphoreDiagnosticsTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task A_semaphore_with_holders_and_a_queue_is_reported_as_one_thing()
    {
        var name = "diag-" + Guid.NewGuid();
        var semaphore = SemaphoreKey.FromName(name);
        await using var first = await db.DataSource.AcquireSemaphoreAsync(name, 2);
        await using var second = await db.DataSource.AcquireSemaphoreAsync(name, 2);
        var waiting = new[] { db.DataSource.AcquireSemaphoreAsync(name, 2, TimeSpan.FromSeconds(60)), db.DataSource.AcquireSemaphoreAsync(name, 2, TimeSpan.FromSeconds(60)) };
        await SemaphoreTests.WaitUntilAsync(async () => await db.ScalarAsync<long>(
            $"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = {(uint)semaphore.ClassId} AND objid = 4294967295") == 2, "two waiters queued");

        var names = new AdvisoryKeyNames();
        names.AddSemaphore(name, 2);
        var usage = Assert.Single(await db.DataSource.GetSemaphoresAsync(names), s => s.Semaphore == semaphore);
        Assert.Equal((name, 2, 2, 2), (usage.Name, usage.MaxCount, usage.Holders.Count, usage.Waiters.Count));
        Assert.StartsWith($"semaphore \"{name}\" (class id {semaphore.ClassId}): 2/2 slots held by ", usage.ToString(), StringComparison.Ordinal);

        // Without the name: found by its queue, count unknown.
        var anonymous = Assert.Single(await db.DataSource.GetSemaphoresAsync(), s => s.Semaphore == semaphore);
        Assert.Equal((null, null, 2, 2), (anonymous.Name, anonymous.MaxCount, anonymous.Holders.Count, anonymous.Waiters.Count));

        // The waiters' target in a lock-wait snapshot is the semaphore's queue, by name.
        var snapshot = await db.DataSource.GetLockWaitSnapshotAsync(new LockWaitSnapshotOptions { AdvisoryKeyNames = names });
        Assert.Contains(snapshot.Waiting, s => s.WaitingFor?.AdvisoryName == $"semaphore {name} (queue)");

        var (exit, output, _) = await RunCliAsync("locks", "--connection", db.ConnectionString, "--semaphore", name + ":2");
        Assert.Equal(0, exit);
        Assert.Contains($"semaphore \"{name}\" (class id {semaphore.ClassId}): 2/2 slots held", output, StringComparison.Ordinal);

        await first.DisposeAsync();
        await second.DisposeAsync();
        foreach (var handle in await Task.WhenAll(waiting).WaitAsync(TimeSpan.FromSeconds(30)))
        {
            await handle.DisposeAsync();
        }
    }

    [Fact]
    public async Task rowlock_key_with_a_count_prints_the_slot_keys()
    {
        var (exit, output, _) = await RunCliAsync("key", "spp_api_v2.fastapi_endpoint_sync", "--semaphore", "3");
        Assert.Equal(0, exit);
        Assert.Contains("class id 891055766", output, StringComparison.Ordinal);
        Assert.Contains("(891055766, -1)", output, StringComparison.Ordinal);
        Assert.Contains("slot 2       (891055766, 2)", output, StringComparison.Ordinal);
        Assert.Contains("from 1 for 4), 'hex'))::bit(32)::int", output, StringComparison.Ordinal);
    }

    private static async Task<(int Exit, string Output, string Error)> RunCliAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "RowLock.Cli.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment.Remove("ROWLOCK_CONNECTION");
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(patience.Token);
        return (process.ExitCode, await output, await error);
    }
}
