using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;
using Xunit.Abstractions;

namespace RowLock.Tests;

/// <summary>
/// A primary with a synchronous standby is killed under load and the standby promoted. Units of work go through
/// <see cref="TransactionRunner"/> on a multi-host data source (<c>Target Session Attributes=primary</c>).
/// Sized by <c>ROWLOCK_FAILOVER_SECONDS</c> (default: about 5 s of load around one failover).
/// </summary>
[Collection(ReplicatedPairCollection.Name)]
public sealed class FailoverTests(ITestOutputHelper output)
{
    private const int Workers = 16;
    private const int WorkersOnDefaults = 2;
    private static readonly TimeSpan HangGuard = TimeSpan.FromMinutes(5);

    /// <summary>
    /// The budget a failover needs: it must outlast the promotion plus Npgsql's <c>Host Recheck Seconds</c> (while that
    /// runs, the promoted server is still remembered as a standby and every open fails with "No suitable host was found").
    /// 30 retries with the delay capped at 1 s is about 26 s of trying.
    /// </summary>
    private static TransactionRunnerOptions FailoverBudget()
    {
        var options = new TransactionRunnerOptions();
        options.Retry.MaxRetryAttempts = 30;
        options.Retry.Delay = TimeSpan.FromMilliseconds(50);
        options.Retry.MaxDelay = TimeSpan.FromSeconds(1);
        return options;
    }

    [ReplicatedPairFact]
    public async Task Sixteen_workers_through_a_failover_lose_no_acknowledged_commit_and_keep_every_invariant()
    {
        var pair = await SharedReplicatedPair.GetWithStandbyAsync();
        var loadSeconds = FaultTestSize.LoadSeconds;
        var database = await pair.CreateDatabaseAsync("failover");
        const int initialStock = 1_000_000;
        var jobs = 2_000 + (400 * (loadSeconds ?? 5));
        // Npgsql remembers the promoted server as a standby for Host Recheck Seconds (default 10: callers then wait about
        // 11 s, more than the library's default retry budget); 2 keeps this test short, the budget above covers either.
        await using var dataSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(database) { HostRecheckSeconds = 2 }.ConnectionString);
        await using (var setup = await dataSource.OpenConnectionAsync())
        {
            await setup.ExecuteAsync($"""
                CREATE TABLE counter (id int PRIMARY KEY, v bigint NOT NULL);
                INSERT INTO counter VALUES (1, 0);
                CREATE TABLE stock (id int PRIMARY KEY, qty int NOT NULL);
                INSERT INTO stock VALUES (1, {initialStock});
                CREATE TABLE jobs (id bigint PRIMARY KEY, consumed_by uuid UNIQUE);
                INSERT INTO jobs SELECT g, NULL FROM generate_series(1, {jobs}) g;
                CREATE TABLE ops (id uuid PRIMARY KEY, kind text NOT NULL, effect boolean NOT NULL);
                """);
        }

        var tuned = new TransactionRunner(dataSource, FailoverBudget());
        var defaults = new TransactionRunner(dataSource);
        var outcomes = new CallerOutcomes();
        var onDefaults = new CallerOutcomes();
        using var stop = new CancellationTokenSource();
        var clock = Stopwatch.StartNew();

        var workers = Enumerable.Range(0, Workers).Select(w => Task.Run(async () =>
        {
            var (runner, record) = w < WorkersOnDefaults ? (defaults, onDefaults) : (tuned, outcomes);
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                var id = Guid.NewGuid();
                var kind = ((w + i) % 3) switch { 0 => "counter", 1 => "fifo", _ => "sale" };
                await record.RecordAsync(id, kind, () => runner.RunAsync((tx, ct) => OperateAsync(tx, kind, id, ct)));
            }
        })).ToArray();

        var failoverTimes = new List<TimeSpan>();
        var failovers = loadSeconds is { } s ? Math.Max(1, s / 20) : 1;
        var interval = loadSeconds is { } total ? TimeSpan.FromSeconds((double)total / (failovers + 1)) : TimeSpan.FromSeconds(1.5);
        for (var f = 0; f < failovers; f++)
        {
            await Task.Delay(interval);
            await pair.RebuildStandbyAsync(); // a no-op the first time; under load afterwards
            failoverTimes.Add(await pair.FailOverAsync());
        }

        await Task.Delay(interval > TimeSpan.FromSeconds(3) ? interval : TimeSpan.FromSeconds(3)); // the survivors work on the new primary
        await stop.CancelAsync();
        await Task.WhenAll(workers).WaitAsync(HangGuard);
        var elapsed = clock.Elapsed;

        await using var check = await dataSource.OpenConnectionAsync();
        var landed = (await check.QueryAsync<(Guid Id, string Kind, bool Effect)>("SELECT id, kind, effect FROM ops")).ToDictionary(r => r.Id);
        var counter = await check.ExecuteScalarAsync<long>("SELECT v FROM counter WHERE id = 1");
        var stock = await check.ExecuteScalarAsync<int>("SELECT qty FROM stock WHERE id = 1");
        var consumedBy = (await check.QueryAsync<Guid>("SELECT consumed_by FROM jobs WHERE consumed_by IS NOT NULL")).ToList();

        var acknowledged = outcomes.Acknowledged.Concat(onDefaults.Acknowledged).ToDictionary(p => p.Key, p => p.Value);
        var unknown = outcomes.Unknown.Concat(onDefaults.Unknown).ToDictionary(p => p.Key, p => p.Value);
        var lost = acknowledged.Keys.Where(id => !landed.ContainsKey(id)).ToList();
        var unknownLanded = unknown.Keys.Where(landed.ContainsKey).ToList();
        var phantoms = landed.Keys.Where(id => !acknowledged.ContainsKey(id) && !unknown.ContainsKey(id)).ToList();
        var exhausted = outcomes.Exhausted.Values.Concat(onDefaults.Exhausted.Values).ToList();

        var summary = string.Create(CultureInfo.InvariantCulture,
            $"failover under load: {elapsed.TotalSeconds:F1} s, {failovers} failover(s) ({string.Join(", ", failoverTimes.Select(t => $"{t.TotalMilliseconds:F0} ms"))} kill-to-writable); " +
            $"operations {outcomes.Operations + onDefaults.Operations}, acknowledged {acknowledged.Count}, lost {lost.Count}, unknown {unknown.Count} (landed {unknownLanded.Count}), " +
            $"retry budget ended {outcomes.Exhausted.Count} (failover budget) + {onDefaults.Exhausted.Count} (library defaults, {WorkersOnDefaults} workers), " +
            $"unexpected errors {outcomes.Unexpected.Count} + {onDefaults.Unexpected.Count} (defaults); longest call {outcomes.Longest.TotalMilliseconds:F0} ms + {onDefaults.Longest.TotalMilliseconds:F0} ms (defaults); counter {counter}, stock sold {initialStock - stock}, jobs consumed {consumedBy.Count}");
        output.WriteLine(summary);
        Console.Error.WriteLine(summary);

        Assert.True(outcomes.Unexpected.IsEmpty && onDefaults.Unexpected.IsEmpty,
            "Only success, CommitOutcomeUnknownException or RetryLimitExceededException may reach a caller; got:\n" + outcomes.DescribeUnexpected() + "\n" + onDefaults.DescribeUnexpected());
        Assert.Empty(lost);
        Assert.Empty(phantoms); // a caller told "failed" never has its effect
        Assert.All(exhausted, e => Assert.True(RowLockPredicates.IsConnectionLoss(e.InnerException) || e.InnerException is NpgsqlException, e.ToString()));

        int CountLanded(string kind, bool effectOnly) => landed.Values.Count(r => r.Kind == kind && (!effectOnly || r.Effect));
        Assert.Equal(acknowledged.Values.Count(k => k == "counter") + unknownLanded.Count(id => unknown[id] == "counter"), counter);
        Assert.Equal(CountLanded("counter", effectOnly: false), counter);
        Assert.InRange(stock, 0, initialStock);
        Assert.Equal(CountLanded("sale", effectOnly: true), initialStock - stock);
        Assert.Equal(CountLanded("fifo", effectOnly: true), consumedBy.Count);
        Assert.All(consumedBy, id => Assert.True(landed.ContainsKey(id)));
        Assert.True(acknowledged.Count > 0);
    }

    [ReplicatedPairFact]
    public async Task Advisory_holders_on_the_old_primary_all_lose_their_locks_and_two_holders_never_act_at_once()
    {
        var pair = await SharedReplicatedPair.GetWithStandbyAsync();
        var database = await pair.CreateDatabaseAsync("advisory_failover");
        await using var dataSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(database) { HostRecheckSeconds = 1 }.ConnectionString);
        await using (var setup = await dataSource.OpenConnectionAsync())
        {
            await setup.ExecuteAsync("CREATE TABLE fenced_writes (id bigserial PRIMARY KEY, holder uuid NOT NULL, seq int NOT NULL)");
        }

        var idle = new List<AdvisoryLockHandle>();
        for (var i = 0; i < 4; i++)
        {
            idle.Add(await dataSource.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("idle-" + i.ToString(CultureInfo.InvariantCulture))));
        }

        var fence = AdvisoryLockKey.FromName("fence");
        var holdersAfterFailover = 0;
        var failedOver = 0;
        var holderErrors = new ConcurrentQueue<Exception>();
        using var stop = new CancellationTokenSource();
        var contenders = Enumerable.Range(0, 3).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                AdvisoryLockHandle handle;
                try
                {
                    handle = await dataSource.AcquireAdvisoryLockAsync(fence, TimeSpan.FromSeconds(5));
                }
                catch (Exception e) when (e is NpgsqlException or LockNotAvailableException)
                {
                    await Task.Delay(50); // no primary yet, or someone else holds it
                    continue;
                }

                await using (handle)
                {
                    if (Volatile.Read(ref failedOver) == 1)
                    {
                        Interlocked.Increment(ref holdersAfterFailover);
                    }

                    var holder = Guid.NewGuid();
                    for (var seq = 0; seq < 5 && !handle.LockLost.IsCancellationRequested; seq++)
                    {
                        try
                        {
                            // The fencing check: write only while the lock is known to be held.
                            await using var write = await dataSource.OpenConnectionAsync(handle.LockLost);
                            await write.ExecuteAsync(new CommandDefinition("INSERT INTO fenced_writes (holder, seq) VALUES (@holder, @seq)", new { holder, seq }, cancellationToken: handle.LockLost));
                            await Task.Delay(5, CancellationToken.None);
                        }
                        catch (Exception e) when (e is NpgsqlException or OperationCanceledException)
                        {
                            holderErrors.Enqueue(e);
                            break;
                        }
                    }
                }
            }
        })).ToArray();

        await Task.Delay(TimeSpan.FromSeconds(1));
        await pair.FailOverAsync();
        Volatile.Write(ref failedOver, 1);

        foreach (var handle in idle)
        {
            // Hang guard, not a timing claim.
            await Task.Delay(Timeout.Infinite, handle.LockLost).ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(handle.IsLost);
        }

        var deadline = Stopwatch.StartNew();
        while (Volatile.Read(ref holdersAfterFailover) < 2 && deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(100);
        }

        await stop.CancelAsync();
        await Task.WhenAll(contenders).WaitAsync(HangGuard);

        // The old primary's locks died with it: the same key is free on the new primary.
        await using (var again = await dataSource.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("idle-0")))
        {
            Assert.NotNull(again);
        }

        foreach (var handle in idle)
        {
            await handle.DisposeAsync();
        }

        await using var check = await dataSource.OpenConnectionAsync();
        var holders = (await check.QueryAsync<Guid>("SELECT holder FROM fenced_writes ORDER BY id")).ToList();
        var runs = new List<Guid>();
        foreach (var holder in holders)
        {
            if (runs.Count == 0 || runs[^1] != holder)
            {
                runs.Add(holder);
            }
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"advisory through failover: {holders.Count} fenced writes by {runs.Count} holders, {holdersAfterFailover} holders after the failover, {holderErrors.Count} writes cut by the failover"));
        Assert.Equal(runs.Count, runs.Distinct().Count()); // each holder's writes form one uninterrupted run
        Assert.True(holdersAfterFailover >= 2, "the lock was never taken again on the new primary");
    }

    private static async Task OperateAsync(NpgsqlTransaction tx, string kind, Guid id, CancellationToken ct)
    {
        var connection = tx.Connection!;
        bool effect;
        switch (kind)
        {
            case "counter":
                var v = (await tx.LockRowsAsync<long>("SELECT v FROM counter WHERE id = 1", null, RowLockClause.ForUpdate, ct))[0];
                await connection.ExecuteAsync(new CommandDefinition("UPDATE counter SET v = @v WHERE id = 1", new { v = v + 1 }, tx, cancellationToken: ct));
                effect = true;
                break;
            case "fifo":
                var claimed = await tx.ClaimRowsAsync<long>("SELECT id FROM jobs WHERE consumed_by IS NULL ORDER BY id", null, 1, ct);
                effect = claimed.Count == 1;
                if (effect)
                {
                    await connection.ExecuteAsync(new CommandDefinition("UPDATE jobs SET consumed_by = @id WHERE id = @job", new { id, job = claimed[0] }, tx, cancellationToken: ct));
                }

                break;
            default:
                var qty = (await tx.LockRowsAsync<int>("SELECT qty FROM stock WHERE id = 1", null, RowLockClause.ForUpdate, ct))[0];
                effect = qty > 0;
                if (effect)
                {
                    await connection.ExecuteAsync(new CommandDefinition("UPDATE stock SET qty = qty - 1 WHERE id = 1", transaction: tx, cancellationToken: ct));
                }

                break;
        }

        await connection.ExecuteAsync(new CommandDefinition("INSERT INTO ops (id, kind, effect) VALUES (@id, @kind, @effect)", new { id, kind, effect }, tx, cancellationToken: ct));
    }
}
