using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace RowLock.Tests.Infrastructure;

/// <summary>Records (category, event id) of every log entry; optionally throws on one event id, as a broken logger would.</summary>
public sealed class RecordingLoggerProvider(int? throwOn = null) : ILoggerProvider
{
    private readonly ConcurrentQueue<(string Category, int EventId)> _entries = new();
    private readonly int? _throwOn = throwOn;

    public IReadOnlyList<(string Category, int EventId)> Entries => [.. _entries];

    /// <summary>A logger factory (all levels on) that logs only to this provider.</summary>
    public ILoggerFactory CreateFactory() => LoggerFactory.Create(b => b.AddProvider(this).SetMinimumLevel(LogLevel.Trace));

    public ILogger CreateLogger(string categoryName) => new Recorder(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Recorder(RecordingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id == owner._throwOn)
            {
                throw new InvalidOperationException("The logger failed.");
            }

            owner._entries.Enqueue((category, eventId.Id));
        }
    }
}
