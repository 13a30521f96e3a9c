using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests.Oracle;

/// <summary>A fresh database with the oracle's model, every shape's row (id 1, counters at 0), and a command counter.</summary>
public sealed class OracleFixture : IAsyncLifetime
{
    public DatabaseFixture Database { get; } = new();

    /// <summary>Counts every command any context of this fixture sends, so a refusal can be shown to send nothing.</summary>
    public CommandCounter Commands { get; } = new();

    public DbContextOptions<OracleContext> Options { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Database.InitializeAsync();
        Options = new DbContextOptionsBuilder<OracleContext>().UseNpgsql(Database.DataSource).UseRowLock().AddInterceptors(Commands).Options;
        await using var db = CreateContext();
        await db.Database.EnsureCreatedAsync();
        await db.Database.ExecuteSqlRawAsync(OracleContext.ExtraSql);
        db.Add(new Manager { Id = 1 });
        db.Add(new Account { Id = 1, ManagerId = 1, Entries = [new Entry { Id = 1 }, new Entry { Id = 2 }] });
        db.Add(new Box { Id = 1 });
        db.Add(new Crate { Id = 1, Slots = [new Slot()] });
        db.Add(new Pallet { Id = 1 });
        db.Add(new Folder { Id = 1, History = [new Meta()] });
        db.Add(new Truck { Id = 1 });
        db.Add(new Dog { Id = 1 });
        db.Add(new Circle { Id = 1 });
        db.Add(new Car { Id = 1, Engine = new Engine() });
        db.Add(new Bike { Id = 1, Bell = new Bell() });
        db.Add(new Ticket { Id = 1 });
        await db.SaveChangesAsync();
    }

    public OracleContext CreateContext() => new(Options);

    /// <summary>True when a second connection's <c>SELECT ... FOR UPDATE NOWAIT</c> on the row gets 55P03; throws when no such row exists.</summary>
    public async Task<bool> IsLockedAsync(string table, string where)
    {
        await using var connection = await Database.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using var command = new NpgsqlCommand($"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} FOR UPDATE NOWAIT) AS r", connection, tx);
        try
        {
            var rows = (long)(await command.ExecuteScalarAsync())!;
            return rows == 0 ? throw new InvalidOperationException($"No row of {table} where {where}.") : false;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            return true;
        }
    }

    public Task DisposeAsync() => Database.DisposeAsync();
}

public sealed class CommandCounter : DbCommandInterceptor
{
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result)
    {
        Interlocked.Increment(ref _count);
        return result;
    }

    public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _count);
        return ValueTask.FromResult(result);
    }

    public override InterceptionResult<object> ScalarExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<object> result)
    {
        Interlocked.Increment(ref _count);
        return result;
    }

    public override ValueTask<InterceptionResult<object>> ScalarExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<object> result, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _count);
        return ValueTask.FromResult(result);
    }

    public override InterceptionResult<int> NonQueryExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<int> result)
    {
        Interlocked.Increment(ref _count);
        return result;
    }

    public override ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _count);
        return ValueTask.FromResult(result);
    }
}
