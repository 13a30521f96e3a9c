using System.Reflection;
using RowLock.TestServer;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: TestFramework("RowLock.Tests.Infrastructure.RowLockTestFramework", "RowLock.Tests")]

namespace RowLock.Tests.Infrastructure;

/// <summary>One PgBouncer (transaction pooling, 4 server connections per database) in front of the shared server, for the whole run.</summary>
public static class SharedPgBouncer
{
    private static readonly Lazy<Task<PgBouncer>> Bouncer = new(async () =>
    {
        var server = await SharedServer.GetAsync();
        var bouncer = await PgBouncer.StartAsync(server.ConnectionString, poolSize: 4);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => bouncer.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return bouncer;
    });

    public static Task<PgBouncer> GetAsync() => Bouncer.Value;

    /// <summary>Whether the pgbouncer binary is on this machine.</summary>
    public static bool IsInstalled => PgBouncer.FindBinary() is not null;

    /// <summary>Why PgBouncer tests are skipped where it is missing.</summary>
    public const string SkipReason = "pgbouncer is not installed on this machine (apt-get install pgbouncer; .ci/run installs it).";

    /// <summary>The tests of this assembly that need PgBouncer: its own facts and every contract run through it.</summary>
    public static int TestCount => typeof(SharedPgBouncer).Assembly.GetTypes()
        .Where(t => !t.IsAbstract)
        .Sum(t => t.GetMethods(BindingFlags.Public | BindingFlags.Instance).Count(m =>
            m.IsDefined(typeof(PgBouncerFactAttribute), inherit: false) ||
            (m.IsDefined(typeof(ContractFactAttribute), inherit: false) && ContractEndpoints.EndpointOf(t) == typeof(PgBouncerEndpoint))));

    /// <summary>The one line a run prints when pgbouncer is missing.</summary>
    public static string MissingNotice =>
        $"pgbouncer not installed: {TestCount} PgBouncer tests skipped; install it with apt-get install pgbouncer (Debian/Ubuntu; .ci/run installs it).";
}

/// <summary>A fact that needs PgBouncer; skipped, with the reason, where it is not installed (.ci/run installs it).</summary>
public sealed class PgBouncerFactAttribute : FactAttribute
{
    public PgBouncerFactAttribute()
    {
        if (!SharedPgBouncer.IsInstalled)
        {
            Skip = SharedPgBouncer.SkipReason;
        }
    }
}

/// <summary>
/// xUnit's own framework, plus one line in the <c>dotnet test</c> output when pgbouncer is missing, so that its tests
/// are not skipped silently. The line is a diagnostic message (xunit.runner.json enables them), which the console
/// shows at the default verbosity, once per run.
/// </summary>
public sealed class RowLockTestFramework : XunitTestFramework
{
    public RowLockTestFramework(IMessageSink messageSink)
        : base(messageSink)
    {
        if (!SharedPgBouncer.IsInstalled)
        {
            messageSink.OnMessage(new DiagnosticMessage(SharedPgBouncer.MissingNotice));
        }
    }
}
