namespace RowLock;

/// <summary>
/// Where each waiting session is drawn: under its parent (the first of its <see cref="LockSession.BlockerChain"/>), with
/// the waiters of one parent grouped by the lock they want, each group oldest wait first. Built once per rendering; every
/// session is drawn once, so the tree and the graph are linear in the sessions.
/// </summary>
internal sealed class LockWaitLayout
{
    private readonly LockWaitSnapshot _snapshot;
    private readonly Dictionary<int, List<List<LockSession>>> _groups = [];
    private readonly Dictionary<int, List<LockSession>> _also = [];
    private readonly HashSet<int> _shown = [];

    private LockWaitLayout(LockWaitSnapshot snapshot)
    {
        _snapshot = snapshot;
        var byParent = new Dictionary<int, Dictionary<string, List<LockSession>>>();
        foreach (var waiter in snapshot.Waiting.Where(w => w.BlockerChain.Count > 0))
        {
            var parent = waiter.BlockerChain[0];
            if (!byParent.TryGetValue(parent, out var locks))
            {
                byParent[parent] = locks = [];
            }

            var what = waiter.WaitingFor?.Describe() ?? "";
            if (!locks.TryGetValue(what, out var members))
            {
                locks[what] = members = [];
            }

            members.Add(waiter);
            foreach (var holder in waiter.Holders.Where(h => h != parent))
            {
                if (!_also.TryGetValue(holder, out var also))
                {
                    _also[holder] = also = [];
                }

                also.Add(waiter);
            }
        }

        foreach (var (parent, locks) in byParent)
        {
            _groups[parent] = locks.Values
                .Select(members => members.OrderBy(OldestFirst).ThenBy(w => w.Pid).ToList())
                .OrderBy(group => OldestFirst(group[0]))
                .ThenBy(group => group[0].Pid)
                .ToList();
        }
    }

    public static LockWaitLayout Of(LockWaitSnapshot snapshot) => new(snapshot);

    /// <summary>The waiters drawn under <paramref name="pid"/>, one group per lock.</summary>
    public IReadOnlyList<IReadOnlyList<LockSession>> Groups(int pid) =>
        _groups.TryGetValue(pid, out var groups) ? groups : [];

    /// <summary>Waiters drawn elsewhere that also wait for a lock <paramref name="pid"/> holds.</summary>
    public IReadOnlyList<LockSession> AlsoWaiting(int pid) =>
        _also.TryGetValue(pid, out var also) ? also.OrderBy(w => w.Pid).ToList() : [];

    /// <summary>The session a waiter is drawn under.</summary>
    public LockSession Parent(LockSession waiter) => _snapshot.Session(waiter.BlockerChain[0]) ?? waiter;

    /// <summary>True the first time a session is drawn (a deadlock cycle would otherwise draw forever).</summary>
    public bool Show(int pid) => _shown.Add(pid);

    /// <summary>Every session reachable from the roots, in the order the tree draws them.</summary>
    public List<LockSession> TreeOrder(IEnumerable<LockSession> roots)
    {
        var order = new List<LockSession>();
        var seen = new HashSet<int>();
        var stack = new Stack<LockSession>(roots.Reverse());
        while (stack.Count > 0)
        {
            var session = stack.Pop();
            if (!seen.Add(session.Pid))
            {
                continue;
            }

            order.Add(session);
            foreach (var waiter in Groups(session.Pid).SelectMany(g => g).Reverse())
            {
                stack.Push(waiter);
            }
        }

        return order;
    }

    /// <summary>Longest wait first: the order the waits began.</summary>
    private static TimeSpan OldestFirst(LockSession waiter) => -(waiter.WaitDuration ?? TimeSpan.Zero);
}
