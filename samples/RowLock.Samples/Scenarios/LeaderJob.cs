using Dapper;
using Npgsql;
using RowLock.Hosting;
using RowLock.Samples.Lab;

namespace RowLock.Samples.Scenarios;

/// <summary>
/// Several instances of a service run the same cron-like job; it must run on one instance at a time, each tick once.
/// Both sides elect one runner with a session advisory lock, and both meet the same fault halfway: the leader stalls
/// (a GC pause, a partition) between reading the next tick and writing it, the server drops its session, and another
/// worker takes over. The stalled leader then wakes up and writes the tick it had read.
/// Naive: a plain session lock; the stale write lands and the tick runs twice.
/// RowLock.Hosting: LeaderElection plus FenceAsync; the database refuses the stale write because a newer epoch exists.
/// </summary>
public sealed class LeaderJob : Scenario
{
    private const string JobName = "lab.leader-job";

    public override string Name => "leader-job";

    public override string Invariant => "each tick of the job runs once, by the current leader";

    private static int Ticks(LabOptions options) => Math.Clamp(options.Iterations, 6, 30);

    protected override Task SetUpAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        dataSource.CreateCommand("DROP TABLE IF EXISTS job_ticks; CREATE TABLE job_ticks (tick int NOT NULL, worker int NOT NULL, epoch bigint NOT NULL);")
            .ExecuteNonQueryAsync(cancellationToken);

    protected override Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        RunSideAsync(dataSource, options, cancellationToken, async (run, worker, done) =>
        {
            // Wait for the lock, then run ticks while holding it (never looking at LockLost).
            await using var handle = await dataSource.AcquireAdvisoryLockAsync(AdvisoryLockKey.FromName(JobName), cancellationToken: done);
            while (!done.IsCancellationRequested)
            {
                var tick = await run.NextTickAsync(dataSource);
                await run.StallIfFirstAsync(dataSource, tick);
                await dataSource.CreateCommand($"INSERT INTO job_ticks VALUES ({tick}, {worker}, 0)").ExecuteNonQueryAsync(CancellationToken.None);
                run.Ran(tick);
                await Task.Delay(5, CancellationToken.None);
            }
        });

    protected override Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
        RunSideAsync(dataSource, options, cancellationToken, async (run, worker, done) =>
        {
            var election = new LeaderElection(dataSource, JobName, new LeaderElectionOptions { InstanceName = $"worker-{worker}" });
            var runner = new TransactionRunner(dataSource);
            await using var leadership = await election.AcquireAsync(done);
            while (!done.IsCancellationRequested)
            {
                var tick = await run.NextTickAsync(dataSource);
                await run.StallIfFirstAsync(dataSource, tick);
                try
                {
                    // The write is fenced: it commits only while this leadership's epoch is the current one.
                    await runner.RunAsync(async (tx, ct) =>
                    {
                        await tx.FenceAsync(leadership, ct);
                        tx.DeferUntilCommit("INSERT INTO job_ticks VALUES (@tick, @worker, @epoch)", new { tick, worker, epoch = leadership.Epoch });
                    }, CancellationToken.None);
                    run.Ran(tick);
                }
                catch (LeadershipLostException)
                {
                    run.Rejected();
                    return; // a stale leader stops; the host would join the election again
                }

                await Task.Delay(5, CancellationToken.None);
            }
        });

    private async Task<SideResult> RunSideAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken,
        Func<Run, int, CancellationToken, Task> worker)
    {
        var errors = new ErrorCounter();
        var run = new Run(Ticks(options), cancellationToken);
        var (_, elapsed) = await TimeAsync(() => RaceAsync(options.Workers, i => errors.RunAsync(async () =>
        {
            try
            {
                await worker(run, i, run.Done);
            }
            catch (OperationCanceledException) when (run.Done.IsCancellationRequested)
            {
                // The job is over: the followers stop waiting.
            }
        })));

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var runs = await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM job_ticks");
        var distinct = await connection.ExecuteScalarAsync<long>("SELECT count(DISTINCT tick) FROM job_ticks");
        var exact = runs == distinct && distinct >= run.Ticks;
        return new SideResult(errors, 0, exact, $"{runs} runs for {distinct} ticks; stale writes refused: {run.RejectedCount}", elapsed);
    }

    /// <summary>Shared state of one side: the tick count, the one stall, and the end.</summary>
    private sealed class Run(int ticks, CancellationToken cancellationToken)
    {
        private readonly CancellationTokenSource _done = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        private int _stalled;
        private int _rejected;

        public int Ticks { get; } = ticks;

        public CancellationToken Done => _done.Token;

        public int RejectedCount => Volatile.Read(ref _rejected);

        public async Task<int> NextTickAsync(NpgsqlDataSource dataSource)
        {
            await using var connection = await dataSource.OpenConnectionAsync(CancellationToken.None);
            return await connection.ExecuteScalarAsync<int>("SELECT coalesce(max(tick), 0) + 1 FROM job_ticks");
        }

        /// <summary>
        /// The first leader to reach the middle tick stalls: the lab ends its session on the server (as a partition or a
        /// long pause ends it), waits until another worker has run that tick, then lets the stalled leader go on.
        /// </summary>
        public async Task StallIfFirstAsync(NpgsqlDataSource dataSource, int tick)
        {
            if (tick != Ticks / 2 || Interlocked.Exchange(ref _stalled, 1) == 1)
            {
                return;
            }

            var (classId, objId, _) = AdvisoryLockKey.FromName(JobName).PgLocksCoordinates;
            await using var connection = await dataSource.OpenConnectionAsync(CancellationToken.None);
            await connection.ExecuteAsync(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND classid = @c::bigint::oid AND objid = @o::bigint::oid",
                new { c = (long)classId, o = (long)objId });
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (await connection.ExecuteScalarAsync<int>("SELECT coalesce(max(tick), 0) FROM job_ticks") < tick && clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(20, CancellationToken.None);
            }
        }

        public void Ran(int tick)
        {
            if (tick >= Ticks)
            {
                _done.Cancel();
            }
        }

        public void Rejected() => Interlocked.Increment(ref _rejected);
    }
}
