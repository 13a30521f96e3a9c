namespace RowLock.Samples.Lab;

/// <summary>One row of the lab's table.</summary>
public sealed record ScenarioResult(string Name, int Workers, string Invariant, SideResult Naive, SideResult RowLock);
