using System.Globalization;
using System.Text;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace RowLock;

/// <summary>
/// Renders a <see cref="LockWaitSnapshot"/> for people: a text tree for logs and terminals, a Mermaid graph for
/// incident notes. The output depends only on the snapshot (no colours, no terminal width), so it is stable to test and diff.
/// </summary>
public static class LockWaitRendering
{
    /// <summary>
    /// The blocking tree: each root blocker (most harmful first) with the sessions waiting behind it, then the sessions
    /// idle in transaction that others wait on, the longest transactions and the deadlocks counter. A session waiting
    /// behind several blockers is shown in full under the first and referred to under the others. Lines end with <c>\n</c>.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="snapshot"/> is null.</exception>
    public static string ToTextTree(this LockWaitSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        var tree = new Tree(new Text(LockWaitText.Headline(snapshot))) { Guide = TreeGuide.Line };
        var shown = new HashSet<int>();
        foreach (var root in snapshot.Roots)
        {
            AddSession(tree.AddNode(Label(root)), root, snapshot, shown);
        }

        var text = new StringBuilder(Render(tree));
        foreach (var line in Footer(snapshot))
        {
            text.Append(line).Append('\n');
        }

        return text.ToString();
    }

    /// <summary>
    /// A Mermaid flowchart (without the <c>```mermaid</c> fence): one node per session, an arrow from each waiting session
    /// to each session it waits behind, labelled with what it waits for; root blockers are red, idle-in-transaction ones noted.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="snapshot"/> is null.</exception>
    public static string ToMermaid(this LockWaitSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        var text = new StringBuilder();
        text.Append("flowchart RL\n");
        var ordered = TreeOrder(snapshot);
        if (ordered.Count == 0)
        {
            text.Append("    none[\"").Append(Mermaid(LockWaitText.Headline(snapshot))).Append("\"]\n");
            return text.ToString();
        }

        foreach (var session in ordered)
        {
            var label = new List<string> { LockWaitText.Who(session) };
            if (session.WaitingFor is not null)
            {
                label.Add("waits " + LockWaitText.Duration(session.WaitDuration));
            }
            else
            {
                label.Add(LockWaitText.Doing(session));
                if (LockWaitText.Query(session) is { } query)
                {
                    label.Add(query);
                }
            }

            text.Append(CultureInfo.InvariantCulture, $"    p{session.Pid}[\"{string.Join("<br/>", label.Select(Mermaid))}\"]\n");
        }

        foreach (var session in ordered.Where(s => s.IsWaiting))
        {
            foreach (var blocker in session.BlockedBy)
            {
                text.Append(CultureInfo.InvariantCulture, $"    p{session.Pid} -->|\"{Mermaid(session.WaitingFor?.ToString() ?? "lock")}\"| p{blocker}\n");
            }
        }

        text.Append("    classDef root fill:#fde2e2,stroke:#c0392b,stroke-width:2px\n");
        text.Append(CultureInfo.InvariantCulture, $"    class {string.Join(",", ordered.Where(s => s.IsRoot).Select(s => "p" + s.Pid.ToString(CultureInfo.InvariantCulture)))} root\n");
        return text.ToString();
    }

    private static void AddSession(TreeNode node, LockSession session, LockWaitSnapshot snapshot, HashSet<int> shown)
    {
        shown.Add(session.Pid);
        foreach (var waiter in Waiters(session, snapshot))
        {
            if (shown.Contains(waiter.Pid))
            {
                node.AddNode(new Text(LockWaitText.Who(waiter) + " (also waits here; shown above)"));
                continue;
            }

            AddSession(node.AddNode(Label(waiter)), waiter, snapshot, shown);
        }
    }

    /// <summary>Longest waiting first, then pid: the order the waits began.</summary>
    private static IEnumerable<LockSession> Waiters(LockSession session, LockWaitSnapshot snapshot) =>
        session.Blocking
            .Select(snapshot.Session)
            .OfType<LockSession>()
            .OrderByDescending(w => w.WaitDuration ?? TimeSpan.Zero)
            .ThenBy(w => w.Pid);

    private static List<LockSession> TreeOrder(LockWaitSnapshot snapshot)
    {
        var order = new List<LockSession>();
        var seen = new HashSet<int>();
        void Visit(LockSession session)
        {
            if (!seen.Add(session.Pid))
            {
                return;
            }

            order.Add(session);
            foreach (var waiter in Waiters(session, snapshot))
            {
                Visit(waiter);
            }
        }

        foreach (var root in snapshot.Roots)
        {
            Visit(root);
        }

        return order;
    }

    private static Text Label(LockSession session)
    {
        var label = LockWaitText.Who(session) + " " + LockWaitText.Doing(session);
        return new Text(LockWaitText.Query(session) is { } query ? label + ": " + query : label);
    }

    private static IEnumerable<string> Footer(LockWaitSnapshot snapshot)
    {
        if (snapshot.IdleInTransactionBlockers.Count > 0)
        {
            yield return "Idle in transaction while others wait: " + string.Join(", ", snapshot.IdleInTransactionBlockers.Select(s =>
                string.Create(CultureInfo.InvariantCulture, $"{LockWaitText.Who(s)} (transaction open {LockWaitText.Duration(s.TransactionAge)}, holds up {s.HoldsUp})")));
        }

        if (snapshot.LongestTransactions.Count > 0)
        {
            yield return "Longest transactions: " + string.Join(", ", snapshot.LongestTransactions.Select(s => LockWaitText.Who(s) + " " + LockWaitText.Duration(s.TransactionAge)));
        }

        yield return string.Create(CultureInfo.InvariantCulture, $"Deadlocks in {snapshot.Database} since statistics reset: {(snapshot.Deadlocks is { } d ? d.ToString(CultureInfo.InvariantCulture) : "?")}");
    }

    /// <summary>Renders with Spectre.Console into a string: no ANSI, no colour, Unicode guides, no wrapping.</summary>
    private static string Render(IRenderable renderable)
    {
        using var writer = new StringWriter(CultureInfo.InvariantCulture) { NewLine = "\n" };
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
            Enrichment = new ProfileEnrichment { UseDefaultEnrichers = false },
        });
        console.Profile.Width = 100_000;
        console.Profile.Capabilities.Unicode = true;
        console.Write(renderable);
        return string.Join("\n", writer.ToString().Split('\n').Select(line => line.TrimEnd())).TrimEnd('\n') + "\n";
    }

    /// <summary>Mermaid label text: its entity syntax (<c>#quot;</c>) keeps quotes, hashes and angle brackets from ending or breaking the label.</summary>
    private static string Mermaid(string text) => text
        .Replace("#", "#35;", StringComparison.Ordinal)
        .Replace("\"", "#quot;", StringComparison.Ordinal)
        .Replace("<", "#lt;", StringComparison.Ordinal)
        .Replace(">", "#gt;", StringComparison.Ordinal);
}
