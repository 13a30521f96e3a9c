namespace RowLock.Diagnostics.LockWaits;

/// <summary>Turns the sessions' blocked-by lists into directions, chains, counts and ranked roots.</summary>
internal static class LockWaitGraph
{
    public static (IReadOnlyList<LockSession> Roots, IReadOnlyList<LockSession> Sessions) Link(IReadOnlyList<LockSession> sessions)
    {
        var byPid = sessions.ToDictionary(s => s.Pid);
        var waitersOf = new Dictionary<int, List<int>>();
        foreach (var session in sessions)
        {
            foreach (var blocker in session.BlockedBy)
            {
                if (!waitersOf.TryGetValue(blocker, out var list))
                {
                    waitersOf[blocker] = list = [];
                }

                list.Add(session.Pid);
            }
        }

        foreach (var session in sessions)
        {
            session.Blocking = waitersOf.TryGetValue(session.Pid, out var waiters) ? waiters.Order().ToArray() : [];
            session.HoldsUp = CountHeldUp(session.Pid, waitersOf);
        }

        // A blocker that waits for nothing is a root. Sessions still waiting but unreachable from any root wait in a
        // cycle (a deadlock the server has not broken yet, within deadlock_timeout): its lowest pid stands as the root.
        var roots = sessions.Where(s => s.Blocking.Count > 0 && !s.IsWaiting).ToList();
        var reached = new HashSet<int>();
        foreach (var root in roots)
        {
            Reach(root.Pid, waitersOf, reached);
        }

        foreach (var session in sessions.Where(s => s.IsWaiting && !reached.Contains(s.Pid)).OrderBy(s => s.Pid))
        {
            if (reached.Contains(session.Pid))
            {
                continue;
            }

            roots.Add(session);
            Reach(session.Pid, waitersOf, reached);
        }

        foreach (var root in roots)
        {
            root.IsRoot = true;
        }

        foreach (var session in sessions.Where(s => s.IsWaiting))
        {
            session.BlockerChain = Chain(session, byPid);
        }

        var ranked = roots
            .OrderByDescending(r => r.HoldsUp)
            .ThenByDescending(r => r.TransactionAge ?? TimeSpan.MinValue)
            .ThenBy(r => r.Pid)
            .ToArray();
        return (ranked, sessions);
    }

    private static int CountHeldUp(int pid, Dictionary<int, List<int>> waitersOf)
    {
        var seen = new HashSet<int>();
        Reach(pid, waitersOf, seen);
        seen.Remove(pid);
        return seen.Count;
    }

    private static void Reach(int pid, Dictionary<int, List<int>> waitersOf, HashSet<int> seen)
    {
        var stack = new Stack<int>();
        stack.Push(pid);
        while (stack.Count > 0)
        {
            var current = stack.Pop();
            if (!waitersOf.TryGetValue(current, out var waiters))
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

    private static int[] Chain(LockSession session, Dictionary<int, LockSession> byPid)
    {
        var chain = new List<int>();
        var seen = new HashSet<int> { session.Pid };
        var current = session;
        while (current.BlockedBy.Count > 0)
        {
            var next = current.BlockedBy[0];
            if (!seen.Add(next))
            {
                break; // a cycle: the chain has come back round
            }

            chain.Add(next);
            if (!byPid.TryGetValue(next, out var blocker) || blocker.IsRoot)
            {
                break;
            }

            current = blocker;
        }

        return [.. chain];
    }
}
