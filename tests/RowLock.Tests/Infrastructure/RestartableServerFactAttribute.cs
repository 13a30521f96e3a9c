using RowLock.TestServer;

namespace RowLock.Tests.Infrastructure;

/// <summary>A fact that needs a private cluster it may restart; skipped, with the reason, where no server binaries exist.</summary>
public sealed class RestartableServerFactAttribute : FactAttribute
{
    public RestartableServerFactAttribute()
    {
        if (!PostgresServer.LocalBinariesAvailable)
        {
            Skip = "Restarting the server needs PostgreSQL server binaries on this machine (a private cluster the test can stop); the shared server is external or a container.";
        }
    }
}
