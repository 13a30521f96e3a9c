using Polly;

namespace RowLock;

/// <summary>Adds RowLock's retry to your own Polly pipeline.</summary>
public static class RowLockResiliencePipelineBuilderExtensions
{
    /// <summary>
    /// Adds a retry that handles PostgreSQL serialization failures, deadlocks and connection loss with exponential backoff
    /// and jitter. The callback you execute through the pipeline must run a whole transaction (open, work, commit), because
    /// a retry can only restart what it wraps.
    /// </summary>
    /// <param name="builder">Your pipeline builder.</param>
    /// <param name="options">The options; null uses RowLock's defaults.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="System.ComponentModel.DataAnnotations.ValidationException">The options are out of range (Polly's validation).</exception>
    public static ResiliencePipelineBuilder AddRowLockRetry(this ResiliencePipelineBuilder builder, RowLockRetryStrategyOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddRetry(options ?? new RowLockRetryStrategyOptions());
    }
}
