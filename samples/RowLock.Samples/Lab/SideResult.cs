namespace RowLock.Samples.Lab;

/// <summary>What one side (naive or RowLock) of a scenario did.</summary>
/// <param name="ErrorsSurfaced">Database errors that reached the caller.</param>
/// <param name="Retries">Attempts re-run by the retry policy (RowLock side).</param>
/// <param name="InvariantHolds">Whether the scenario's invariant held at the end.</param>
/// <param name="Detail">The measured numbers behind the invariant, e.g. "total 312 of 400".</param>
/// <param name="Elapsed">Wall time of the side.</param>
/// <param name="ErrorKinds">The surfaced errors by SQLSTATE, e.g. "40P01 x 3" (see <see cref="ErrorCounter.Kinds"/>).</param>
public sealed record SideResult(int ErrorsSurfaced, int Retries, bool InvariantHolds, string Detail, TimeSpan Elapsed, string ErrorKinds = "")
{
    /// <summary>Counts and kinds of an <see cref="ErrorCounter"/>.</summary>
    public SideResult(ErrorCounter errors, int retries, bool invariantHolds, string detail, TimeSpan elapsed)
        : this(errors.Count, retries, invariantHolds, detail, elapsed, errors.Kinds)
    {
    }

    /// <summary>The RowLock side's verdict: its invariant held and no error reached the caller.</summary>
    public bool Succeeded => InvariantHolds && ErrorsSurfaced == 0;
}
