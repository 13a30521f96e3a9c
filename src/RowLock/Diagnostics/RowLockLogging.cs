using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace RowLock;

/// <summary>
/// Where the lock helpers (extension methods, which have no constructor to take a logger) write their logs.
/// <c>services.AddRowLock()</c> sets it from the container; otherwise set it once at startup. Defaults to no logging.
/// <see cref="TransactionRunner"/> takes its own <see cref="ILogger{TCategoryName}"/>.
/// </summary>
public static class RowLockLogging
{
    private static ILoggerFactory _loggerFactory = NullLoggerFactory.Instance;

    /// <summary>The factory the helpers create their loggers from (categories <c>RowLock.AdvisoryLocks</c> and <c>RowLock.RowLocks</c>).</summary>
    public static ILoggerFactory LoggerFactory
    {
        get => _loggerFactory;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            _loggerFactory = value;
            _advisory = null;
        }
    }

    private static ILogger? _advisory;

    internal static ILogger Advisory => _advisory ??= _loggerFactory.CreateLogger("RowLock.AdvisoryLocks");
}
