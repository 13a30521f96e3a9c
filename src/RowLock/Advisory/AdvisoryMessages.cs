using System.Globalization;

namespace RowLock.Internal;

internal static class AdvisoryMessages
{
    /// <summary>Why an Acquire call threw: the lock was held by someone else for longer than the caller would wait.</summary>
    public static string NotGranted(AdvisoryLockKey key, TimeSpan timeout) => timeout == TimeSpan.Zero
        ? string.Create(CultureInfo.InvariantCulture, $"The advisory lock {key} is held by someone else and the timeout was zero (do not wait); try again later.")
        : string.Create(CultureInfo.InvariantCulture, $"The advisory lock {key} is held by someone else and was not granted within {LockTimeout.Milliseconds(timeout)} ms; try again later.");

    /// <summary>Why a semaphore Acquire call threw: every slot stayed taken for longer than the caller would wait.</summary>
    public static string SemaphoreFull(SemaphoreKey semaphore, int maxCount, TimeSpan timeout) => timeout == TimeSpan.Zero
        ? string.Create(CultureInfo.InvariantCulture, $"All {maxCount} slots of the {semaphore} are taken (or others are queued for one) and the timeout was zero (do not wait); try again later.")
        : string.Create(CultureInfo.InvariantCulture, $"All {maxCount} slots of the {semaphore} stayed taken for {LockTimeout.Milliseconds(timeout)} ms; try again later.");

    public const string Multiplexing =
        "Advisory lock handles need a physical connection of their own, and a multiplexing data source (Multiplexing=true) shares " +
        "connections between commands. Use a data source without multiplexing for advisory lock handles.";
}
