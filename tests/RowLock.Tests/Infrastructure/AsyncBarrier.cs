namespace RowLock.Tests.Infrastructure;

/// <summary>
/// A one-shot barrier that awaits instead of blocking a thread: racing workers must not starve the thread pool
/// (a blocking Barrier with 16 participants on 2 cores stalls for seconds while the pool grows).
/// </summary>
public sealed class AsyncBarrier(int participants)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly TaskCompletionSource _allArrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _remaining = participants;

    public Task SignalAndWaitAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Decrement(ref _remaining) == 0)
        {
            _allArrived.TrySetResult();
        }

        return _allArrived.Task.WaitAsync(Patience, cancellationToken);
    }
}
