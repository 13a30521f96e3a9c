using Polly;

namespace RowLock.Internal;

/// <summary>
/// One <c>RunAsync</c> call as Polly's telemetry reports it: how many attempts ran, and whether the retry strategy
/// judged the last outcome retryable. Carried in the <see cref="ResilienceContext"/>, so concurrent runs never share it.
/// </summary>
internal sealed class UnitOfWorkRun
{
    public static readonly ResiliencePropertyKey<UnitOfWorkRun> Key = new("RowLock.UnitOfWorkRun");

    /// <summary>The caller's name for this unit of work (<c>RunAsync("checkout", ...)</c>), or null: tags its metrics, logs and trace.</summary>
    public string? OperationName { get; init; }

    /// <summary>Attempts that ran to an outcome (Polly reports each one).</summary>
    public int Attempts { get; set; }

    /// <summary>
    /// Polly's own <c>ShouldHandle</c> verdict on the last attempt. True on the final outcome means the retry gave up
    /// only because no attempt was left (or the caller cancelled): the budget is exhausted.
    /// </summary>
    public bool LastOutcomeRetryable { get; set; }
}
