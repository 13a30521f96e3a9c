using System.Collections;

namespace RowLock.Internal;

/// <summary>
/// The log scope of a named unit of work: one pair, <c>rowlock.operation</c> = the name, in the
/// <c>IReadOnlyList&lt;KeyValuePair&lt;string, object?&gt;&gt;</c> shape that structured sinks (and OpenTelemetry's
/// log exporter) turn into attributes.
/// </summary>
internal sealed class OperationScope(string operationName) : IReadOnlyList<KeyValuePair<string, object?>>
{
    public int Count => 1;

    public KeyValuePair<string, object?> this[int index] => index == 0
        ? new KeyValuePair<string, object?>(RowLockHistograms.OperationTag, operationName)
        : throw new ArgumentOutOfRangeException(nameof(index));

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        yield return this[0];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => RowLockHistograms.OperationTag + "=" + operationName;
}

/// <summary>Ends a log scope without letting a failing logger fail the unit of work that opened it.</summary>
internal sealed class GuardedScope(IDisposable inner) : IDisposable
{
    public void Dispose()
    {
        try
        {
            inner.Dispose();
        }
        catch (Exception)
        {
            // Logging must never fail a unit of work.
        }
    }
}
