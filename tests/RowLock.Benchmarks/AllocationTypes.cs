using System.Diagnostics.Tracing;
using System.Globalization;
using System.Text;

namespace RowLock.Benchmarks;

/// <summary>Scratch: which types a side allocates, sampled from the runtime's GC AllocationTick events (one per ~100 KB).</summary>
internal sealed class AllocationTypes : EventListener
{
    private readonly Dictionary<string, long> _bytes = new();
    private bool _on;

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(source, EventLevel.Verbose, (EventKeywords)0x1);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (!_on || e.EventName is null || !e.EventName.StartsWith("GCAllocationTick", StringComparison.Ordinal) || e.PayloadNames is null)
        {
            return;
        }

        var name = (string?)e.Payload![e.PayloadNames.IndexOf("TypeName")] ?? "?";
        var amount = Convert.ToInt64(e.Payload[e.PayloadNames.IndexOf("AllocationAmount64")], CultureInfo.InvariantCulture);
        lock (_bytes)
        {
            _bytes[name] = _bytes.GetValueOrDefault(name) + amount;
        }
    }

    public static async Task<string> ProfileAsync(string title, int ops, Func<Task> op)
    {
        using var listener = new AllocationTypes();
        for (var i = 0; i < 100; i++)
        {
            await op();
        }

        listener._on = true;
        for (var i = 0; i < ops; i++)
        {
            await op();
        }

        listener._on = false;
        var report = new StringBuilder().AppendLine(CultureInfo.InvariantCulture, $"### {title}: sampled bytes/op by type").AppendLine();
        lock (listener._bytes)
        {
            foreach (var (name, bytes) in listener._bytes.OrderByDescending(p => p.Value).Take(40))
            {
                report.AppendLine(CultureInfo.InvariantCulture, $"    {bytes / (double)ops,8:F0}  {name}");
            }
        }

        return report.ToString();
    }
}
