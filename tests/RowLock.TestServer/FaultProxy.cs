using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace RowLock.TestServer;

/// <summary>
/// An in-process TCP proxy on 127.0.0.1 in front of a server, that can forward, go silent (a partition that closes
/// nothing) or reset connections: see <see cref="ProxyMode"/>. <see cref="Mode"/> applies to every connection, open
/// and new; <see cref="SilenceOpenConnections"/> cuts only the connections open now, for good, while new ones
/// follow <see cref="Mode"/> (the network path of one session died, a reconnect takes another). Also counts round trips
/// (a client send after the server answered), which is what the benchmarks' latency proxy measures.
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    private static readonly TimeSpan GatePoll = TimeSpan.FromMilliseconds(10);
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly string _targetHost;
    private readonly int _targetPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<Connection, byte> _connections = new();
    private readonly Task _accepting;
    private volatile ProxyMode _mode;
    private long _roundTrips;
    private long _accepted;

    /// <summary>Starts listening on a free 127.0.0.1 port, forwarding to <paramref name="targetHost"/>:<paramref name="targetPort"/>.</summary>
    public FaultProxy(string targetHost, int targetPort)
    {
        _targetHost = targetHost;
        _targetPort = targetPort;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptAsync();
    }

    /// <summary>The port clients connect to.</summary>
    public int Port { get; }

    /// <summary>What happens to the bytes of every connection; setting <see cref="ProxyMode.Reset"/> resets the open ones at once.</summary>
    public ProxyMode Mode
    {
        get => _mode;
        set
        {
            _mode = value;
            if (value == ProxyMode.Reset)
            {
                ResetOpenConnections();
            }
        }
    }

    /// <summary>Connections accepted so far.</summary>
    public long AcceptedConnections => Interlocked.Read(ref _accepted);

    /// <summary>Connections open now (silenced ones included).</summary>
    public int OpenConnections => _connections.Count;

    /// <summary>Client sends that followed a server answer (the first send of a connection counts too).</summary>
    public long RoundTrips => Interlocked.Read(ref _roundTrips);

    /// <summary>A proxy in front of the host and port that <paramref name="connectionString"/> names.</summary>
    public static FaultProxy For(string connectionString)
    {
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(connectionString);
        return new FaultProxy(builder.Host ?? "127.0.0.1", builder.Port);
    }

    /// <summary>The same connection string, through this proxy.</summary>
    public string ConnectionStringFor(string connectionString) =>
        new Npgsql.NpgsqlConnectionStringBuilder(connectionString) { Host = "127.0.0.1", Port = Port }.ConnectionString;

    /// <summary>
    /// The connections open now go silent for good, without FIN or RST (see <see cref="ProxyMode.Silent"/>); new
    /// connections are not affected. With <paramref name="repliesOnly"/>, the client's bytes still reach the server but
    /// nothing comes back: a COMMIT in flight then commits and the client never learns it.
    /// </summary>
    /// <returns>How many connections were silenced.</returns>
    public int SilenceOpenConnections(bool repliesOnly = false)
    {
        var count = 0;
        foreach (var connection in _connections.Keys)
        {
            connection.SilenceReplies = true;
            connection.SilenceRequests |= !repliesOnly;
            count++;
        }

        return count;
    }

    /// <summary>Closes every open connection with a TCP reset on both sides.</summary>
    public void ResetOpenConnections()
    {
        foreach (var connection in _connections.Keys)
        {
            connection.Reset();
        }
    }

    /// <summary>Stops listening and closes every connection (normally, with FIN).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Stop();
        foreach (var connection in _connections.Keys)
        {
            connection.Close();
        }

        try
        {
            await _accepting.ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }

        _stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            Interlocked.Increment(ref _accepted);
            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(Socket client)
    {
        var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.NoDelay = true;
        var connection = new Connection(client, server);
        _connections[connection] = 0;
        try
        {
            if (_mode == ProxyMode.Reset)
            {
                connection.Reset();
                return;
            }

            try
            {
                await server.ConnectAsync(_targetHost, _targetPort, _stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                connection.Reset(); // the server refused: so does the proxy
                return;
            }

            var serverSpoke = 1;
            var up = PumpAsync(connection, client, server, requests: true, () =>
            {
                if (Interlocked.Exchange(ref serverSpoke, 0) == 1)
                {
                    Interlocked.Increment(ref _roundTrips);
                }
            });
            var down = PumpAsync(connection, server, client, requests: false, () => Volatile.Write(ref serverSpoke, 1));
            await Task.WhenAll(up, down).ConfigureAwait(false);
        }
        finally
        {
            _connections.TryRemove(connection, out _);
            connection.Close();
        }
    }

    /// <summary>
    /// Reads, then waits at the gate until this direction may forward, then writes. While silent nothing more is read,
    /// so the sender's kernel buffers fill as they would in a partition; an end of stream is held back too (no FIN).
    /// </summary>
    private async Task PumpAsync(Connection connection, Socket from, Socket to, bool requests, Action onData)
    {
        var buffer = new byte[65536];
        var token = connection.Closing;
        try
        {
            while (true)
            {
                int read;
                try
                {
                    read = await from.ReceiveAsync(buffer, SocketFlags.None, token).ConfigureAwait(false);
                }
                catch (SocketException)
                {
                    // The sender reset (or broke) its connection: pass the reset on, unless this direction is silent.
                    await WaitForGateAsync(connection, requests, token).ConfigureAwait(false);
                    connection.Reset();
                    return;
                }

                await WaitForGateAsync(connection, requests, token).ConfigureAwait(false);
                if (read == 0)
                {
                    connection.Close();
                    return;
                }

                onData();
                await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // The connection was reset or closed by the other pump, a mode change or DisposeAsync.
            connection.Close();
        }
    }

    private async Task WaitForGateAsync(Connection connection, bool requests, CancellationToken token)
    {
        while (_mode != ProxyMode.Forward || (requests ? connection.SilenceRequests : connection.SilenceReplies))
        {
            await Task.Delay(GatePoll, token).ConfigureAwait(false);
        }
    }

    private sealed class Connection(Socket client, Socket server)
    {
        private readonly CancellationTokenSource _closing = new();
        private int _closed;

        public volatile bool SilenceRequests;
        public volatile bool SilenceReplies;

        public CancellationToken Closing => _closing.Token;

        /// <summary>RST on both sides: linger on with a zero timeout makes close() send a reset instead of a FIN.</summary>
        public void Reset()
        {
            foreach (var socket in (Socket[])[client, server])
            {
                try
                {
                    socket.LingerState = new LingerOption(true, 0);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                }
            }

            Close();
        }

        public void Close()
        {
            if (Interlocked.Exchange(ref _closed, 1) == 1)
            {
                return;
            }

            _closing.Cancel();
            client.Dispose();
            server.Dispose();
        }
    }
}
