using System.Diagnostics;
using System.Globalization;

namespace RowLock.TestServer;

/// <summary>
/// A shell in its own session (so Ctrl+C and process-group kills do not reach it) that waits for this process to end,
/// then runs a cleanup script. Harmless when the cleanup already happened.
/// </summary>
internal static class Watchdog
{
    public static void Start(string cleanup)
    {
        var parent = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        var script = "exec </dev/null >/dev/null 2>&1; " +
                     $"while kill -0 {parent} 2>/dev/null; do sleep 1; done; " + cleanup;
        var start = new ProcessStartInfo("setsid") { UseShellExecute = false };
        foreach (var a in (string[])["-f", "sh", "-c", script])
        {
            start.ArgumentList.Add(a);
        }

        using var watchdog = Process.Start(start);
    }
}
