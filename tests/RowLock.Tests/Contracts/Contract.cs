using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests.Contracts;

/// <summary>
/// The base of every contract family: one abstract class per family of guarantees, whose <see cref="ContractFactAttribute"/>
/// tests run once per concrete subclass, that is once per endpoint (<c>...OnDirectConnections</c>, <c>...ThroughPgBouncer</c>).
/// Scenarios go through <see cref="DataSource"/>; tables are created, and outcomes read, on direct connections (<see cref="Db"/>).
/// </summary>
public abstract class Contract<TEndpoint>(TEndpoint endpoint) : IClassFixture<TEndpoint>
    where TEndpoint : ContractEndpoint, IEndpointAvailability
{
    protected TEndpoint Endpoint { get; } = endpoint;

    /// <summary>The database on direct connections: setup and invariants.</summary>
    protected DatabaseFixture Db => Endpoint.Database;

    /// <summary>The endpoint under test.</summary>
    protected NpgsqlDataSource DataSource => Endpoint.DataSource;
}
