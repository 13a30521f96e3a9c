using System.Diagnostics;
using System.Globalization;

namespace RowLock.Tests.Leader;

/// <summary>Takeover times of one fault, reported as median and max; rounds sized by ROWLOCK_LEADER_ROUNDS.</summary>
public sealed class LeaderTiming(string fault)
{
    private readonly List<double> _takeoversMs = [];

    public static int Rounds(int ciDefault) =>
        int.TryParse(Environment.GetEnvironmentVariable("ROWLOCK_LEADER_ROUNDS"), out var rounds) && rounds > 0 ? rounds : ciDefault;

    public void Add(long faultAt, long acquiredAt) => _takeoversMs.Add(Stopwatch.GetElapsedTime(faultAt, acquiredAt).TotalMilliseconds);

    public override string ToString()
    {
        var sorted = _takeoversMs.Order().ToList();
        var median = sorted.Count == 0 ? 0 : sorted[sorted.Count / 2];
        return string.Create(CultureInfo.InvariantCulture,
            $"{fault}: {sorted.Count} takeovers, median {median:F0} ms, max {(sorted.Count == 0 ? 0 : sorted[^1]):F0} ms");
    }
}
