using RowLock.Tests.Contracts;
using RowLock.Tests.Infrastructure;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace RowLock.Tests;

/// <summary>
/// A contract runs once per endpoint, and is skipped with the endpoint's reason only where that endpoint cannot run
/// (pgbouncer not installed): never silently, never on an endpoint that can run.
/// </summary>
public sealed class ContractFactTests
{
    private const string Reason = "this endpoint cannot run here (a test endpoint)";

    [Fact]
    public void A_contract_on_an_endpoint_that_cannot_run_here_is_skipped_with_the_endpoints_reason()
    {
        var skipped = Assert.Single(Discover(typeof(RowLocksNowhere)));
        Assert.Equal(Reason, skipped.SkipReason);

        var direct = Assert.Single(Discover(typeof(RowLocksOnDirectConnections)));
        Assert.Null(direct.SkipReason);
        Assert.Equal(typeof(DirectEndpoint), ContractEndpoints.EndpointOf(typeof(RowLocksOnDirectConnections)));
        Assert.Equal(typeof(PgBouncerEndpoint), ContractEndpoints.EndpointOf(typeof(TransactionRunnerThroughPgBouncer)));
        Assert.Null(ContractEndpoints.EndpointOf(typeof(ContractFactTests)));
    }

    private static IEnumerable<IXunitTestCase> Discover(Type testClass)
    {
        var method = new TestMethod(
            new TestClass(new TestCollection(new TestAssembly(Reflector.Wrap(testClass.Assembly)), null, "contracts"), Reflector.Wrap(testClass)),
            Reflector.Wrap(testClass.GetMethod(nameof(RowLockContract<DirectEndpoint>.Nowait_on_a_free_row_locks_it))!));
        var fact = method.Method.GetCustomAttributes(typeof(FactAttribute)).Single();
        return new ContractFactDiscoverer(new NullMessageSink()).Discover(new DefaultOptions(), method, fact);
    }

    // Private, so xUnit does not discover it as a test class of its own.
    private sealed class UnavailableEndpoint : ContractEndpoint, IEndpointAvailability
    {
        public static string? SkipReason => Reason;

        public override Npgsql.NpgsqlDataSource DataSource => throw new InvalidOperationException(Reason);

        public override int ConcurrentTransactions => 0;
    }

    private sealed class RowLocksNowhere(UnavailableEndpoint endpoint) : RowLockContract<UnavailableEndpoint>(endpoint);

    private sealed class DefaultOptions : ITestFrameworkDiscoveryOptions
    {
        public TValue GetValue<TValue>(string name) => default!;

        public void SetValue<TValue>(string name, TValue value)
        {
        }
    }
}
