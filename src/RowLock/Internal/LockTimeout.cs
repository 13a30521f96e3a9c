using System.Globalization;

namespace RowLock.Internal;

/// <summary>Validates lock timeouts and renders them for <c>SET LOCAL lock_timeout</c>.</summary>
internal static class LockTimeout
{
    /// <summary>lock_timeout is an int of milliseconds.</summary>
    public static readonly TimeSpan Max = TimeSpan.FromMilliseconds(int.MaxValue);

    /// <summary>A row-lock clause's timeout: positive and finite (NOWAIT and waiting have clauses of their own).</summary>
    public static TimeSpan Validate(TimeSpan timeout, string paramName)
    {
        if (timeout == System.Threading.Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(paramName, timeout, "An infinite timeout is not a timeout: use the waiting clause (no WithTimeout) instead.");
        }

        if (timeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(paramName, timeout, "The lock timeout must be positive. To fail at once use NoWait(); to wait forever leave the timeout out.");
        }

        return AtMostMax(timeout, paramName);
    }

    /// <summary>
    /// An advisory lock's timeout, the same in every advisory entry point: null or <see cref="System.Threading.Timeout.InfiniteTimeSpan"/>
    /// waits as long as it takes (returns null); <see cref="TimeSpan.Zero"/> does not wait; a positive timeout waits at most that long.
    /// </summary>
    public static TimeSpan? ValidateAdvisory(TimeSpan? timeout, string paramName)
    {
        if (timeout is null || timeout == System.Threading.Timeout.InfiniteTimeSpan)
        {
            return null;
        }

        if (timeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(paramName, timeout,
                "The timeout cannot be negative. Use TimeSpan.Zero not to wait, or null or Timeout.InfiniteTimeSpan to wait as long as it takes.");
        }

        return AtMostMax(timeout.Value, paramName);
    }

    private static TimeSpan AtMostMax(TimeSpan timeout, string paramName) => timeout <= Max
        ? timeout
        : throw new ArgumentOutOfRangeException(paramName, timeout, "The lock timeout must be at most 24.8 days (PostgreSQL's lock_timeout is an int of milliseconds).");

    /// <summary>Whole milliseconds, rounded up so that a sub-millisecond timeout does not become 0 (which means "no timeout").</summary>
    public static int Milliseconds(TimeSpan timeout) => (int)Math.Min(int.MaxValue, Math.Ceiling(timeout.TotalMilliseconds));

    public static string SetLocal(TimeSpan timeout) =>
        string.Create(CultureInfo.InvariantCulture, $"SET LOCAL lock_timeout = {Milliseconds(timeout)}");

    /// <summary>No lock_timeout for the rest of the transaction: an unbounded wait that a server-wide setting cannot cut short.</summary>
    public const string SetLocalNone = "SET LOCAL lock_timeout = 0";

    /// <summary>Remembers the caller's lock_timeout so that it can be put back after our bounded wait (one result set).</summary>
    public const string Save = "SELECT set_config('rowlock.saved_lock_timeout', current_setting('lock_timeout'), true)";

    /// <summary>Puts the caller's lock_timeout back (one result set).</summary>
    public const string Restore = "SELECT set_config('lock_timeout', current_setting('rowlock.saved_lock_timeout'), true)";
}
