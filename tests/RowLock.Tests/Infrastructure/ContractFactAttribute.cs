using Xunit.Abstractions;
using Xunit.Sdk;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// A fact of a contract class (<c>SomeContract&lt;TEndpoint&gt;</c>): it runs once per concrete subclass, that is once
/// per endpoint, and is skipped, with the endpoint's <see cref="IEndpointAvailability.SkipReason"/>, where that endpoint
/// cannot run (pgbouncer not installed).
/// </summary>
[XunitTestCaseDiscoverer("RowLock.Tests.Infrastructure.ContractFactDiscoverer", "RowLock.Tests")]
[AttributeUsage(AttributeTargets.Method)]
public sealed class ContractFactAttribute : FactAttribute;

/// <summary>Discovers <see cref="ContractFactAttribute"/> tests, skipping those whose endpoint is unavailable here.</summary>
public sealed class ContractFactDiscoverer(IMessageSink diagnosticMessageSink) : FactDiscoverer(diagnosticMessageSink)
{
    protected override IXunitTestCase CreateTestCase(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute)
    {
        var testClass = testMethod.TestClass.Class.ToRuntimeType();
        var skip = ContractEndpoints.SkipReason(testClass);
        return skip is null
            ? base.CreateTestCase(discoveryOptions, testMethod, factAttribute)
            : new XunitSkippedDataRowTestCase(DiagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod, skip);
    }
}

/// <summary>Which endpoint a contract class runs against.</summary>
public static class ContractEndpoints
{
    /// <summary>The <see cref="ContractEndpoint"/> type argument of <paramref name="testClass"/>'s contract base, or null.</summary>
    public static Type? EndpointOf(Type testClass)
    {
        for (var type = testClass; type is not null; type = type.BaseType)
        {
            var endpoint = type.IsGenericType ? type.GetGenericArguments().FirstOrDefault(a => a.IsSubclassOf(typeof(ContractEndpoint))) : null;
            if (endpoint is not null)
            {
                return endpoint;
            }
        }

        return null;
    }

    /// <summary>Why <paramref name="testClass"/>'s endpoint cannot run here, or null when it can (or it is no contract class).</summary>
    public static string? SkipReason(Type testClass) =>
        EndpointOf(testClass)?.GetProperty(nameof(IEndpointAvailability.SkipReason), System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)?.GetValue(null) as string;
}
