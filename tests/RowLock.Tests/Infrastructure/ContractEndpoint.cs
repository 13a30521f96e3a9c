using Npgsql;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// Where a contract runs: a fresh database, reached directly for setting up and for checking invariants from outside
/// (<see cref="Database"/>), and the data source the guarantees are proven through (<see cref="DataSource"/>), which is
/// that database directly or through a pooler.
/// </summary>
public abstract class ContractEndpoint : IAsyncLifetime
{
    /// <summary>The database, on direct connections: create tables and read the outcome here.</summary>
    public DatabaseFixture Database { get; } = new();

    /// <summary>The data source the scenarios go through.</summary>
    public abstract NpgsqlDataSource DataSource { get; }

    /// <summary>How many transactions can be open at once through <see cref="DataSource"/> (a pooler's server connections).</summary>
    public abstract int ConcurrentTransactions { get; }

    public virtual Task InitializeAsync() => Database.InitializeAsync();

    public virtual Task DisposeAsync() => Database.DisposeAsync();
}

/// <summary>Whether an endpoint can run on this machine; a contract's tests are skipped, with the reason, where it cannot.</summary>
public interface IEndpointAvailability
{
    /// <summary>Null when the endpoint can run here; otherwise why not and how to fix it.</summary>
    static abstract string? SkipReason { get; }
}

/// <summary>Npgsql's own pool, straight to the server.</summary>
public sealed class DirectEndpoint : ContractEndpoint, IEndpointAvailability
{
    public static string? SkipReason => null;

    public override NpgsqlDataSource DataSource => Database.DataSource;

    public override int ConcurrentTransactions => new NpgsqlConnectionStringBuilder(Database.ConnectionString).MaxPoolSize;
}

/// <summary>A real PgBouncer in transaction pooling mode (<see cref="SharedPgBouncer"/>): every transaction may get another server connection.</summary>
public sealed class PgBouncerEndpoint : ContractEndpoint, IEndpointAvailability
{
    private NpgsqlDataSource? _pooled;
    private int _poolSize;

    public static string? SkipReason => SharedPgBouncer.IsInstalled ? null : SharedPgBouncer.SkipReason;

    public override NpgsqlDataSource DataSource => _pooled ?? throw new InvalidOperationException("PgBouncer is not running: " + SkipReason);

    public override int ConcurrentTransactions => _poolSize;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        if (SkipReason is not null)
        {
            return;
        }

        var bouncer = await SharedPgBouncer.GetAsync();
        _poolSize = bouncer.PoolSize;
        _pooled = NpgsqlDataSource.Create(bouncer.ConnectionStringFor(Database.ConnectionString));
    }

    public override async Task DisposeAsync()
    {
        if (_pooled is not null)
        {
            await _pooled.DisposeAsync();
        }

        await base.DisposeAsync();
    }
}
