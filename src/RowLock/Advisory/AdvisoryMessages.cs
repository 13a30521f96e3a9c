using System.Globalization;

namespace RowLock.Internal;

internal static class AdvisoryMessages
{
    public static string NotGranted(AdvisoryLockKey key, TimeSpan timeout) => string.Create(CultureInfo.InvariantCulture,
        $"The advisory lock {key} is held by someone else and was not granted within {LockTimeout.Milliseconds(timeout)} ms; try again later.");
}
