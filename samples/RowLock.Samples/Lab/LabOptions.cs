namespace RowLock.Samples.Lab;

/// <summary>Sizes of a lab run.</summary>
public sealed record LabOptions(int Workers = 8, int Iterations = 50);
