using System.ComponentModel.DataAnnotations;
using System.Data;
using Microsoft.Extensions.Options;
using Polly;

namespace RowLock.Internal;

/// <summary>
/// Checks <see cref="TransactionRunnerOptions"/> as the runner would when it is built (Polly's range checks on the retry
/// options, a clock, an isolation level PostgreSQL has), so that <c>ValidateOnStart</c> reports a bad configuration when
/// the host starts instead of at the first unit of work.
/// </summary>
internal sealed class TransactionRunnerOptionsValidator : IValidateOptions<TransactionRunnerOptions>
{
    public ValidateOptionsResult Validate(string? name, TransactionRunnerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (!Enum.IsDefined(options.IsolationLevel) || options.IsolationLevel == IsolationLevel.Chaos)
        {
            failures.Add($"IsolationLevel '{options.IsolationLevel}' is not one PostgreSQL offers: use ReadCommitted, RepeatableRead or Serializable.");
        }

        if (options.TimeProvider is null)
        {
            failures.Add("TimeProvider must not be null.");
        }

        if (options.Retry is null)
        {
            failures.Add("Retry must not be null.");
        }
        else
        {
            try
            {
                new ResiliencePipelineBuilder().AddRowLockRetry(options.Retry.Snapshot()).Build();
            }
            catch (ValidationException e)
            {
                failures.Add("Retry: " + e.Message.ReplaceLineEndings(" ").Trim());
            }
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
