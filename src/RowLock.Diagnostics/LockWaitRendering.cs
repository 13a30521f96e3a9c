using System.Globalization;
using System.Text;
using System.Text.Json;
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
    /// idle in transaction that others wait on, the longest transactions and the deadlocks counter. The waiters of one
    /// lock hang together under the session holding it, as one queue (<c>150 waiting in queue order for row (0,1) of
    /// public.jobs, oldest first</c>) when there are several, so the output is linear in the sessions however long the
    /// queue. A session waiting on several holders is shown in full under the first and referred to under the others.
    /// Lines end with <c>\n</c>.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="snapshot"/> is null.</exception>
    public static string ToTextTree(this LockWaitSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        var layout = LockWaitLayout.Of(snapshot);
        var tree = new Tree(new Text(LockWaitText.Headline(snapshot))) { Guide = TreeGuide.Line };
        foreach (var root in snapshot.Roots.Where(r => layout.Show(r.Pid)))
        {
            AddSession(tree.AddNode(Label(root)), root, layout);
        }

        var text = new StringBuilder(Render(tree));
        foreach (var line in Footer(snapshot))
        {
            text.Append(line).Append('\n');
        }

        return text.ToString();
    }

    /// <summary>
    /// A Mermaid flowchart (without the <c>```mermaid</c> fence): one node per session (prepared transactions too), an
    /// arrow from each waiting session to the session holding what it waits for, labelled with the lock; several waiters
    /// of one lock go through one queue node. Root blockers are red. Every arrow ends at a declared node.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="snapshot"/> is null.</exception>
    public static string ToMermaid(this LockWaitSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        var text = new StringBuilder();
        text.Append("flowchart RL\n");
        var layout = LockWaitLayout.Of(snapshot);
        var ordered = layout.TreeOrder(snapshot.Roots);
        if (ordered.Count == 0)
        {
            text.Append("    none[\"").Append(Mermaid(LockWaitText.Headline(snapshot))).Append("\"]\n");
            return text.ToString();
        }

        foreach (var session in ordered)
        {
            var label = new List<string> { LockWaitText.Who(session) };
            if (session.WaitingFor is not null && session.IsWaiting)
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

            text.Append(CultureInfo.InvariantCulture, $"    {Node(session.Pid)}[\"{string.Join("<br/>", label.Select(Mermaid))}\"]\n");
        }

        var declared = ordered.Select(s => s.Pid).ToHashSet();
        var queues = 0;
        foreach (var session in ordered)
        {
            foreach (var group in layout.Groups(session.Pid))
            {
                if (group.Count == 1)
                {
                    var waiter = group[0];
                    text.Append(CultureInfo.InvariantCulture, $"    {Node(waiter.Pid)} -->|\"{Mermaid(waiter.WaitingFor?.ToString() ?? "lock")}\"| {Node(session.Pid)}\n");
                    continue;
                }

                var queue = string.Create(CultureInfo.InvariantCulture, $"q{++queues}");
                var what = group[0].WaitingFor?.Describe() ?? "lock";
                text.Append(CultureInfo.InvariantCulture, $"    {queue}[/\"{LockWaitText.Plural(group.Count, "waits", "wait")} in queue order<br/>{Mermaid(what)}\"/]\n");
                text.Append(CultureInfo.InvariantCulture, $"    {queue} --> {Node(session.Pid)}\n");
                var position = 0;
                foreach (var waiter in group)
                {
                    text.Append(CultureInfo.InvariantCulture, $"    {Node(waiter.Pid)} -->|\"{++position}: {Mermaid(waiter.WaitingFor?.Mode ?? "")}\"| {queue}\n");
                }
            }

            foreach (var also in layout.AlsoWaiting(session.Pid).Where(w => declared.Contains(w.Pid)))
            {
                text.Append(CultureInfo.InvariantCulture, $"    {Node(also.Pid)} -.->|\"{Mermaid(also.WaitingFor?.ToString() ?? "lock")}\"| {Node(session.Pid)}\n");
            }
        }

        text.Append("    classDef root fill:#fde2e2,stroke:#c0392b,stroke-width:2px\n");
        text.Append(CultureInfo.InvariantCulture, $"    class {string.Join(",", ordered.Where(s => s.IsRoot).Select(s => Node(s.Pid)))} root\n");
        return text.ToString();
    }

    /// <summary>
    /// The snapshot as JSON for scripts (one object, UTF-8, indented; the shape is documented in docs/diagnostics.md and
    /// versioned by its <c>version</c> field): the header, the ranked roots and every session with what it waits for, its
    /// holders and its chain up to the root. Durations are seconds. <c>blockedBy</c> is left out (pg_blocking_pids names
    /// every waiter ahead in a queue, which is quadratic in a long queue): <c>holders</c> and <c>blockerChain</c> carry the graph.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="snapshot"/> is null.</exception>
    public static string ToJson(this LockWaitSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteNumber("version", 1);
            json.WriteString("takenAt", snapshot.TakenAt);
            json.WriteString("database", snapshot.Database);
            WriteNumber(json, "deadlocks", snapshot.Deadlocks);
            json.WriteNumber("waiting", snapshot.Waiting.Count);
            WriteSeconds(json, "longestWaitSeconds", snapshot.Waiting.Select(w => w.WaitDuration).Max());
            json.WriteStartArray("roots");
            foreach (var root in snapshot.Roots)
            {
                json.WriteNumberValue(root.Pid);
            }

            json.WriteEndArray();
            json.WriteStartArray("sessions");
            foreach (var session in snapshot.Sessions)
            {
                WriteSession(json, session);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray()).ReplaceLineEndings("\n") + "\n";
    }

    private static void WriteSession(Utf8JsonWriter json, LockSession session)
    {
        json.WriteStartObject();
        json.WriteNumber("pid", session.Pid);
        json.WriteString("kind", session.IsPreparedTransaction ? "prepared_transaction" : "session");
        json.WriteString("preparedTransactionId", session.PreparedTransactionId);
        json.WriteString("database", session.Database);
        json.WriteBoolean("inOtherDatabase", session.IsInOtherDatabase);
        json.WriteString("user", session.UserName);
        json.WriteString("application", session.ApplicationName);
        json.WriteString("backendType", session.BackendType);
        json.WriteString("client", session.Client);
        json.WriteString("state", session.State);
        WriteSeconds(json, "stateSeconds", session.StateDuration);
        WriteSeconds(json, "transactionSeconds", session.TransactionAge);
        json.WriteString("query", session.Query);
        json.WriteBoolean("detailHidden", session.IsDetailHidden);
        WriteNumber(json, "parallelLeaderPid", session.ParallelLeaderPid);
        json.WriteNumber("parallelWorkers", session.ParallelWorkers);
        json.WriteBoolean("isRoot", session.IsRoot);
        json.WriteBoolean("inDeadlockCycle", session.IsInDeadlockCycle);
        json.WriteNumber("holdsUp", session.HoldsUp);
        WriteSeconds(json, "waitSeconds", session.WaitDuration);
        if (session.WaitingFor is { } target)
        {
            json.WriteStartObject("waitingFor");
            json.WriteString("kind", target.Kind.ToString().ToLowerInvariant());
            json.WriteString("lockType", target.LockType);
            json.WriteString("mode", target.Mode);
            json.WriteString("description", target.Describe());
            json.WriteString("relation", target.Relation);
            WriteNumber(json, "relationId", target.RelationId);
            json.WriteString("database", target.Database);
            json.WriteString("ctid", target.Ctid);
            json.WriteString("transactionId", target.TransactionId);
            if (target.AdvisoryKey is { IsInt32Pair: false } key)
            {
                json.WriteNumber("advisoryKey", key.Value);
            }
            else
            {
                json.WriteNull("advisoryKey");
            }

            if (target.AdvisoryKey is { IsInt32Pair: true } pair)
            {
                json.WriteStartArray("advisoryKeyPair");
                json.WriteNumberValue(pair.Key1);
                json.WriteNumberValue(pair.Key2);
                json.WriteEndArray();
            }
            else
            {
                json.WriteNull("advisoryKeyPair");
            }

            json.WriteString("advisoryName", target.AdvisoryName);
            json.WriteEndObject();
        }
        else
        {
            json.WriteNull("waitingFor");
        }

        WriteArray(json, "holders", session.Holders);
        WriteArray(json, "blockerChain", session.BlockerChain);
        WriteNumber(json, "rootBlocker", session.RootBlocker);
        json.WriteEndObject();
    }

    private static void WriteArray(Utf8JsonWriter json, string name, IReadOnlyList<int> values)
    {
        json.WriteStartArray(name);
        foreach (var value in values)
        {
            json.WriteNumberValue(value);
        }

        json.WriteEndArray();
    }

    private static void WriteNumber(Utf8JsonWriter json, string name, long? value)
    {
        if (value is { } v)
        {
            json.WriteNumber(name, v);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    private static void WriteSeconds(Utf8JsonWriter json, string name, TimeSpan? value)
    {
        if (value is { } v)
        {
            json.WriteNumber(name, Math.Round(v.TotalSeconds, 3));
        }
        else
        {
            json.WriteNull(name);
        }
    }

    /// <summary>A Mermaid node id: <c>p4711</c> for a session, <c>x1</c> for a prepared transaction (negative pid).</summary>
    private static string Node(int pid) => pid >= 0
        ? string.Create(CultureInfo.InvariantCulture, $"p{pid}")
        : string.Create(CultureInfo.InvariantCulture, $"x{-(long)pid}");

    private static void AddSession(TreeNode node, LockSession session, LockWaitLayout layout)
    {
        foreach (var group in layout.Groups(session.Pid))
        {
            var parent = node;
            if (group.Count > 1)
            {
                parent = node.AddNode(new Text(string.Create(CultureInfo.InvariantCulture,
                    $"{group.Count} waiting in queue order for {group[0].WaitingFor?.Describe() ?? "a lock"}, oldest first")));
            }

            foreach (var waiter in group)
            {
                if (!layout.Show(waiter.Pid))
                {
                    // A lock cycle comes back to a session already drawn: name it, do not draw it twice.
                    parent.AddNode(new Text(LockWaitText.Who(waiter) + " (shown above: the cycle closes here)"));
                    continue;
                }

                AddSession(parent.AddNode(Label(waiter)), waiter, layout);
            }
        }

        foreach (var also in layout.AlsoWaiting(session.Pid))
        {
            node.AddNode(new Text(LockWaitText.Who(also) + " also waits here (shown under " + LockWaitText.Who(layout.Parent(also)) + ")"));
        }
    }

    private static Text Label(LockSession session) =>
        new(LockWaitText.Who(session) + " " + LockWaitText.Doing(session) + LockWaitText.QuerySuffix(session));

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
