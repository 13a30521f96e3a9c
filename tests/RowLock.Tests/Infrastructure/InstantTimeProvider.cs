using System.Collections.Concurrent;

namespace RowLock.Tests.Infrastructure;

/// <summary>A clock whose timers fire at once, recording the delays asked for: retry tests need no real sleeping.</summary>
public sealed class InstantTimeProvider : TimeProvider
{
    public ConcurrentQueue<TimeSpan> Delays { get; } = new();

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        Delays.Enqueue(dueTime);
        return System.CreateTimer(callback, state, TimeSpan.Zero, period);
    }
}
