using System.Collections.Concurrent;
using System.Diagnostics;
using Npgsql;
using RowLock.Hosting;

namespace RowLock.Tests.Leader;

/// <summary>
/// One instance in a leader test: waits for leadership, then appends fenced rows as a leader that never looks at
/// <see cref="Leadership.Lost"/> (the worst case: a leader that missed its loss), so only the database's fence stops it.
/// Stops writing when the fence refuses it, then resigns (disposes) and joins the election again.
/// </summary>
public sealed class Candidate : IAsyncDisposable
{
    private readonly TransactionRunner _runner;
    private readonly FencedLog _log;
    private readonly Elections _elections;
    private readonly int _resignAfterRows;
    private readonly CancellationTokenSource _stop = new();
    private Task _loop = Task.CompletedTask;
    private int _staleRejections;

    public Candidate(string id, LeaderElection election, NpgsqlDataSource businessDataSource, FencedLog log, Elections elections, int resignAfterRows = 0)
    {
        Id = id;
        Election = election;
        _runner = new TransactionRunner(businessDataSource);
        _log = log;
        _elections = elections;
        _resignAfterRows = resignAfterRows;
    }

    public string Id { get; }

    public LeaderElection Election { get; }

    /// <summary>Fenced appends the database refused (<see cref="LeadershipLostException"/>): a stale leader's writes.</summary>
    public int StaleRejections => Volatile.Read(ref _staleRejections);

    public Exception? Failure { get; private set; }

    public void Start() => _loop = Task.Run(LoopAsync);

    private async Task LoopAsync()
    {
        var stop = _stop.Token;
        var alternate = false;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                Leadership leadership;
                try
                {
                    leadership = await Election.AcquireAsync(stop);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    return;
                }

                var tenure = _elections.Acquired(Id, leadership);
                await using (leadership)
                {
                    var rows = 0;
                    while (!stop.IsCancellationRequested)
                    {
                        try
                        {
                            await _log.AppendAsync(_runner, leadership, Id, deferred: alternate = !alternate, stop);
                            rows++;
                            tenure.Rows = rows;
                        }
                        catch (LeadershipLostException)
                        {
                            Interlocked.Increment(ref _staleRejections);
                            break;
                        }
                        catch (OperationCanceledException) when (stop.IsCancellationRequested)
                        {
                            break;
                        }
                        catch (Exception e) when (e is NpgsqlException or RowLockException or TimeoutException or InvalidOperationException)
                        {
                            // The database is unreachable for now (failover, a reset): a leader keeps trying.
                            await Task.Delay(50, CancellationToken.None);
                        }

                        if (_resignAfterRows > 0 && rows >= _resignAfterRows)
                        {
                            break;
                        }

                        await Task.Delay(5, CancellationToken.None);
                    }
                }

                tenure.Ended = Stopwatch.GetTimestamp();
            }
        }
        catch (Exception e)
        {
            Failure = e;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }
}

/// <summary>Every leadership won in a test, in order of epoch.</summary>
public sealed class Elections
{
    private readonly ConcurrentDictionary<long, Tenure> _byEpoch = new();
    private readonly SemaphoreSlim _changed = new(0, int.MaxValue);

    public IReadOnlyList<Tenure> All => _byEpoch.Values.OrderBy(t => t.Epoch).ToList();

    public int Count => _byEpoch.Count;

    public Tenure Acquired(string holder, Leadership leadership)
    {
        var tenure = new Tenure(holder, leadership, Stopwatch.GetTimestamp());
        if (!_byEpoch.TryAdd(leadership.Epoch, tenure))
        {
            throw new InvalidOperationException($"Epoch {leadership.Epoch} was handed out twice.");
        }

        leadership.Lost.Register(() => tenure.LostAt = Stopwatch.GetTimestamp());
        _changed.Release();
        return tenure;
    }

    /// <summary>Waits for a leadership with an epoch above <paramref name="epoch"/> that has written <paramref name="rows"/> rows.</summary>
    public async Task<Tenure> NextAsync(long epoch, int rows, TimeSpan guard)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var next = _byEpoch.Values.Where(t => t.Epoch > epoch && t.Rows >= rows).OrderBy(t => t.Epoch).FirstOrDefault();
            if (next is not null)
            {
                return next;
            }

            if (clock.Elapsed > guard)
            {
                throw new TimeoutException($"No leader after epoch {epoch} wrote {rows} rows within {guard.TotalSeconds} s (epochs so far: {string.Join(", ", _byEpoch.Keys.Order())}).");
            }

            await _changed.WaitAsync(TimeSpan.FromMilliseconds(20));
        }
    }
}

public sealed class Tenure(string holder, Leadership leadership, long acquiredAt)
{
    public string Holder { get; } = holder;

    public Leadership Leadership { get; } = leadership;

    public long Epoch => Leadership.Epoch;

    public long AcquiredAt { get; } = acquiredAt;

    public long? LostAt { get; set; }

    public long? Ended { get; set; }

    public volatile int Rows;
}
