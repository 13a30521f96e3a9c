using RowLock.TestServer;

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
}

/// <summary>A fact that needs PgBouncer; skipped, with the reason, where it is not installed (.ci/run installs it).</summary>
public sealed class PgBouncerFactAttribute : FactAttribute
{
    public PgBouncerFactAttribute()
    {
        if (PgBouncer.FindBinary() is null)
        {
            Skip = "pgbouncer is not installed on this machine (apt-get install pgbouncer; .ci/run installs it).";
        }
    }
}
