using System.Net;
using System.Net.Sockets;

namespace RowLock.Benchmarks;

/// <summary>
/// A TCP proxy in front of the server that counts round trips: every time the client sends after the server has
/// answered, that is one more round trip. Used only to count, never while timing.
/// </summary>
internal sealed class RoundTripProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly string _host;
    private readonly int _port;
    private readonly CancellationTokenSource _stop = new();
    private long _roundTrips;

    public RoundTripProxy(string host, int port)
    {
        _host = host;
        _port = port;
        _listener.Start();
        _ = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public long RoundTrips => Interlocked.Read(ref _roundTrips);

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using var _ = client;
        using var server = new TcpClient();
        await server.ConnectAsync(_host, _port);
        var serverSpoke = 1; // the first client burst counts as a round trip too
        var up = Pump(client.GetStream(), server.GetStream(), () =>
        {
            if (Interlocked.Exchange(ref serverSpoke, 0) == 1)
            {
                Interlocked.Increment(ref _roundTrips);
            }
        });
        var down = Pump(server.GetStream(), client.GetStream(), () => Volatile.Write(ref serverSpoke, 1));
        await Task.WhenAny(up, down);
    }

    private async Task Pump(NetworkStream from, NetworkStream to, Action onData)
    {
        var buffer = new byte[65536];
        try
        {
            int read;
            while ((read = await from.ReadAsync(buffer, _stop.Token)) > 0)
            {
                onData();
                await to.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    public ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        _stop.Dispose();
        return ValueTask.CompletedTask;
    }
}
