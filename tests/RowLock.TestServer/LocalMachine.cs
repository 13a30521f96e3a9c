using System.Net;
using System.Net.Sockets;

namespace RowLock.TestServer;

/// <summary>Facts about this machine that the throwaway servers need.</summary>
internal static class LocalMachine
{
    /// <summary>As root, PostgreSQL and PgBouncer must run as the <c>postgres</c> user: both refuse root.</summary>
    public static bool IsRoot => Environment.UserName == "root";

    /// <summary>A port on 127.0.0.1 that is free now (a race with other programs is possible; callers retry or fail clearly).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
