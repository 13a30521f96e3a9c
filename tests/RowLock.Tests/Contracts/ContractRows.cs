namespace RowLock.Tests.Contracts;

/// <summary>A FIFO stock layer as the scenarios read it.</summary>
public sealed record Layer(long Id, int RemainingQty);

/// <summary>An account as the scenarios read it.</summary>
public sealed record Account(int Id, decimal Balance);
