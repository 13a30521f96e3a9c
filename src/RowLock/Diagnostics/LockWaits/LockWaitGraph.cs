namespace RowLock.Diagnostics.LockWaits;

/// <summary>
/// Turns the sessions' blocked-by lists into holders, chains, counts and ranked roots, in time linear in the edges that
/// matter: pg_blocking_pids names every conflicting waiter ahead in a lock's queue, so N waiters on one row give N²/2
/// pairs; only the holders of a lock (and, for a waiter queued behind waiters only, the holder of its queue) become edges.
/// </summary>
internal static class LockWaitGraph
{
    public static (IReadOnlyList<LockSession> Roots, IReadOnlyList<LockSession> Sessions) Link(IReadOnlyList<LockSession> sessions)
    {
        var byPid = sessions.ToDictionary(s => s.Pid);
        var blocking = new Dictionary<int, List<int>>();
        foreach (var session in sessions)
        {
            foreach (var blocker in session.BlockedBy)
            {
                Add(blocking, blocker, session.Pid);
            }
        }

        foreach (var session in sessions)
        {
            session.Blocking = blocking.TryGetValue(session.Pid, out var waiters) ? waiters.Order().ToArray() : [];
            session.Holders = session.BlockedBy.Where(b => !QueuedAhead(session, b, byPid)).ToArray();
        }

        var parent = Parents(sessions);

        // The edges that count: each waiter under its parent and under every holder of the lock it wants.
        var children = new Dictionary<int, List<int>>();
        foreach (var (waiter, first) in parent)
        {
            Add(children, first, waiter);
            foreach (var holder in byPid[waiter].Holders.Where(h => h != first))
            {
                Add(children, holder, waiter);
            }
        }

        foreach (var session in sessions)
        {
            session.HoldsUp = CountHeldUp(session.Pid, children);
        }

        // A blocker that waits for nothing is a root. Sessions still waiting but unreachable from any root wait in a
        // cycle (a deadlock the server has not broken yet, within deadlock_timeout): its lowest pid stands as the root.
        var roots = sessions.Where(s => children.ContainsKey(s.Pid) && !s.IsWaiting).ToList();
        var reached = new HashSet<int>();
        foreach (var root in roots)
        {
            Reach(root.Pid, children, reached);
        }

        var cycles = sessions.Where(s => s.IsWaiting && !reached.Contains(s.Pid)).OrderBy(s => s.Pid).ToArray();
        foreach (var session in cycles)
        {
            session.IsInDeadlockCycle = true;
            if (reached.Contains(session.Pid))
            {
                continue;
            }

            roots.Add(session);
            reached.Add(session.Pid);
            Reach(session.Pid, children, reached);
        }

        foreach (var root in roots)
        {
            root.IsRoot = true;
        }

        foreach (var session in sessions.Where(s => s.IsWaiting))
        {
            session.BlockerChain = Chain(session, parent, byPid);
        }

        var ranked = roots
            .OrderByDescending(r => r.HoldsUp)
            .ThenByDescending(r => r.TransactionAge ?? TimeSpan.MinValue)
            .ThenBy(r => r.Pid)
            .ToArray();
        return (ranked, sessions);
    }

    /// <summary>True when <paramref name="blockerPid"/> only waits ahead of <paramref name="waiter"/> for the same lock.</summary>
    private static bool QueuedAhead(LockSession waiter, int blockerPid, Dictionary<int, LockSession> byPid) =>
        waiter.WaitingFor is { } wanted
        && byPid.TryGetValue(blockerPid, out var blocker)
        && blocker.IsWaiting
        && blocker.WaitingFor is { } ahead
        && ahead.Identity == wanted.Identity;

    /// <summary>
    /// Each waiter's parent: the lowest-pid holder of the lock it wants; for a waiter queued behind waiters only, the
    /// parent of the oldest waiter of that lock that has a holder (so a queue hangs under the session it waits on).
    /// </summary>
    private static Dictionary<int, int> Parents(IReadOnlyList<LockSession> sessions)
    {
        var parent = new Dictionary<int, int>();
        var queueHolder = new Dictionary<string, int>();
        foreach (var waiter in sessions.Where(s => s.IsWaiting && s.Holders.Count > 0)
                     .OrderByDescending(s => s.WaitDuration ?? TimeSpan.Zero).ThenBy(s => s.Pid))
        {
            parent[waiter.Pid] = waiter.Holders[0];
            queueHolder.TryAdd(waiter.WaitingFor!.Identity, waiter.Holders[0]);
        }

        foreach (var waiter in sessions.Where(s => s.IsWaiting && s.Holders.Count == 0))
        {
            parent[waiter.Pid] = queueHolder.TryGetValue(waiter.WaitingFor?.Identity ?? "", out var holder) && holder != waiter.Pid
                ? holder
                : waiter.BlockedBy[0];
        }

        return parent;
    }

    private static void Add(Dictionary<int, List<int>> map, int key, int value)
    {
        if (!map.TryGetValue(key, out var list))
        {
            map[key] = list = [];
        }

        list.Add(value);
    }

    private static int CountHeldUp(int pid, Dictionary<int, List<int>> children)
    {
        var seen = new HashSet<int>();
        Reach(pid, children, seen);
        seen.Remove(pid);
        return seen.Count;
    }

    private static void Reach(int pid, Dictionary<int, List<int>> children, HashSet<int> seen)
    {
        var stack = new Stack<int>();
        stack.Push(pid);
        while (stack.Count > 0)
        {
            var current = stack.Pop();
            if (!children.TryGetValue(current, out var waiters))
            {
                continue;
            }

            foreach (var waiter in waiters)
            {
                if (seen.Add(waiter))
                {
                    stack.Push(waiter);
                }
            }
        }
    }

    private static int[] Chain(LockSession session, Dictionary<int, int> parent, Dictionary<int, LockSession> byPid)
    {
        var chain = new List<int>();
        var seen = new HashSet<int> { session.Pid };
        var current = session.Pid;
        while (parent.TryGetValue(current, out var next))
        {
            if (!seen.Add(next))
            {
                break; // a cycle: the chain has come back round
            }

            chain.Add(next);
            if (!byPid.TryGetValue(next, out var blocker) || blocker.IsRoot)
            {
                break;
            }

            current = next;
        }

        return [.. chain];
    }
}
