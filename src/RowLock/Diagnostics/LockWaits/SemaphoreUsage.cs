using System.Globalization;

namespace RowLock;

/// <summary>One semaphore as <see cref="LockDiagnostics.GetSemaphoresAsync"/> found it: who holds its slots, who queues for one.</summary>
public sealed class SemaphoreUsage
{
    internal SemaphoreUsage(SemaphoreKey semaphore, string? name, int? maxCount, IReadOnlyList<int> holders, IReadOnlyList<int> waiters)
    {
        Semaphore = semaphore;
        Name = name;
        MaxCount = maxCount;
        Holders = holders;
        Waiters = waiters;
    }

    /// <summary>The semaphore's key (its class id).</summary>
    public SemaphoreKey Semaphore { get; }

    /// <summary>The name registered with <see cref="AdvisoryKeyNames.AddSemaphore(string, int)"/>, or null.</summary>
    public string? Name { get; }

    /// <summary>The count registered with the name, or null when the semaphore was found by its queue only.</summary>
    public int? MaxCount { get; }

    /// <summary>The pids holding a slot (a session holding several slots is listed once per slot).</summary>
    public IReadOnlyList<int> Holders { get; }

    /// <summary>
    /// The pids queued for a slot: the session holding the turnstile (the head of the queue, looking for a free slot)
    /// and those waiting for it, plus any session waiting on a slot key directly.
    /// </summary>
    public IReadOnlyList<int> Waiters { get; }

    /// <summary>E.g. <c>semaphore "exports" (class id 123): 4/4 slots held by 101, 102, 103, 104; 2 waiting: 105, 106</c>.</summary>
    public override string ToString()
    {
        var who = Name is null ? string.Create(CultureInfo.InvariantCulture, $"semaphore (class id {Semaphore.ClassId})")
            : string.Create(CultureInfo.InvariantCulture, $"semaphore \"{Name}\" (class id {Semaphore.ClassId})");
        var held = MaxCount is { } max ? string.Create(CultureInfo.InvariantCulture, $"{Holders.Count}/{max}") : Holders.Count.ToString(CultureInfo.InvariantCulture);
        return string.Create(CultureInfo.InvariantCulture,
            $"{who}: {held} slots held{(Holders.Count > 0 ? " by " + string.Join(", ", Holders) : "")}; {Waiters.Count} waiting{(Waiters.Count > 0 ? ": " + string.Join(", ", Waiters) : "")}");
    }
}
