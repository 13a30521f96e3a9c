using System.Collections.Concurrent;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Logging;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>
/// Issue 26 item 11: EF Core logs a conflict RowLock handles as two Errors with stack traces. The one line documented in
/// docs/telemetry.md keeps them out of Error logs while the exception still reaches the caller.
/// </summary>
public sealed class ConflictLoggingTests : IClassFixture<EfFixture>, IAsyncLifetime
{
    private readonly EfFixture _ef;

    public ConflictLoggingTests(EfFixture ef) => _ef = ef;

    public async Task InitializeAsync()
    {
        await _ef.Database.ExecuteAsync("TRUNCATE orders, order_lines RESTART IDENTITY");
        await using var db = _ef.CreateContext();
        db.Orders.Add(new Order { Customer = "c", Total = 10 });
        await db.SaveChangesAsync();
    }

    public Task DisposeAsync() => Task.CompletedTask;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_handled_NOWAIT_conflict_is_an_EF_Error_log_unless_the_documented_line_downgrades_it(bool quiet)
    {
        var entries = new ConcurrentQueue<(string Category, LogLevel Level, int EventId)>();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(new Recorder(entries)).SetMinimumLevel(LogLevel.Trace));
        var options = new DbContextOptionsBuilder<ShopContext>().UseNpgsql(_ef.Database.DataSource).UseRowLock().UseLoggerFactory(loggers);
        if (quiet)
        {
            QuietConflicts(options);
        }

        await using var holder = await _ef.Database.HoldAsync("orders", 1);
        await using var db = new ShopContext(options.Options);
        await using var tx = await db.Database.BeginTransactionAsync();

        await Assert.ThrowsAsync<LockNotAvailableException>(() => db.Orders.Where(o => o.Id == 1).WithRowLock(RowLockClause.ForUpdate.NoWait()).ToListAsync());

        var errors = entries.Where(e => e.Level >= LogLevel.Error).ToList();
        if (quiet)
        {
            Assert.Empty(errors);
            Assert.Contains(entries, e => e is { Category: "Microsoft.EntityFrameworkCore.Database.Command", Level: LogLevel.Debug, EventId: 20102 });
        }
        else
        {
            Assert.Contains(errors, e => e is { Category: "Microsoft.EntityFrameworkCore.Database.Command", EventId: 20102 });
            Assert.Contains(errors, e => e is { Category: "Microsoft.EntityFrameworkCore.Query", EventId: 10100 });
        }
    }

    /// <summary>The line docs/telemetry.md shows, as written there.</summary>
    private static DbContextOptionsBuilder QuietConflicts(DbContextOptionsBuilder options) =>
        options.ConfigureWarnings(w => w.Log((RelationalEventId.CommandError, LogLevel.Debug), (CoreEventId.QueryIterationFailed, LogLevel.Debug)));

    private sealed class Recorder(ConcurrentQueue<(string Category, LogLevel Level, int EventId)> entries) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(entries, categoryName);

        public void Dispose()
        {
        }

        private sealed class Logger(ConcurrentQueue<(string Category, LogLevel Level, int EventId)> entries, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                entries.Enqueue((category, logLevel, eventId.Id));
        }
    }
}
