using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// Keeps every log entry at or above a minimum level with its event id and exception, to assert on the shape and size
/// of what an operator would store.
/// </summary>
public sealed class RecordingLogger<T>(LogLevel minimum = LogLevel.Trace) : ILogger<T>
{
    public sealed record Entry(LogLevel Level, EventId EventId, string Message, Exception? Exception)
    {
        /// <summary>What a typical console or file sink writes: the message, then the exception with its stack trace.</summary>
        public int StoredLength => Message.Length + (Exception?.ToString().Length ?? 0);
    }

    public ConcurrentQueue<Entry> Entries { get; } = new();

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel))
        {
            Entries.Enqueue(new Entry(logLevel, eventId, formatter(state, exception), exception));
        }
    }
}

/// <summary>A logger whose every call throws, as a broken sink would: logging must never fail a unit of work.</summary>
public sealed class ThrowingLogger<T> : ILogger<T>
{
    public int Calls;

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => throw new InvalidOperationException("the log sink is broken");

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        Interlocked.Increment(ref Calls);
        throw new InvalidOperationException("the log sink is broken");
    }
}
