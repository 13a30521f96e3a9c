using System.Threading.Channels;
using Microsoft.Extensions.Time.Testing;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// A <see cref="FakeTimeProvider"/> that tells the test when a timer is created and for how long: the runner is in a
/// backoff delay exactly when it has created one, and stays there until the test advances <see cref="Fake"/>. Nothing
/// sleeps and nothing is timed.
/// </summary>
public sealed class ObservedFakeClock : TimeProvider
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly Channel<TimeSpan> _timers = Channel.CreateUnbounded<TimeSpan>();

    /// <summary>The clock itself: advance it to end a delay.</summary>
    public FakeTimeProvider Fake { get; } = new();

    public override long TimestampFrequency => Fake.TimestampFrequency;

    public override DateTimeOffset GetUtcNow() => Fake.GetUtcNow();

    public override long GetTimestamp() => Fake.GetTimestamp();

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = Fake.CreateTimer(callback, state, dueTime, period);
        _timers.Writer.TryWrite(dueTime);
        return timer;
    }

    /// <summary>Waits (at most 30 s, to fail instead of hanging) until the next timer exists; returns its due time.</summary>
    public async Task<TimeSpan> NextTimerAsync() => await _timers.Reader.ReadAsync().AsTask().WaitAsync(Patience);
}
