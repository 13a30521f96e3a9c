using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace RowLock.Benchmarks;

/// <summary>
/// A loopback TCP proxy that holds every chunk of bytes, in each direction, for a fixed one-way delay before
/// forwarding it: a network between client and server on one machine. It runs in a child process of its own (this
/// program started with <c>--delay-proxy</c>), so its CPU time is the child's and is reported apart from the client's.
/// <para>
/// How the delay is made: socket reads are asynchronous; each chunk read is stamped "due at read time + delay" and
/// queued. One dedicated thread forwards the queue in order. It sleeps until the head chunk is due with
/// <c>clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)</c> on Linux (timer slack set to 1 ns for that thread, so the
/// kernel does not round sub-millisecond sleeps up by its default 50 µs), never <c>Task.Delay</c> (whose timer ticks
/// are a millisecond or more); elsewhere it spins with <see cref="SpinWait"/>. The forwarding thread runs at nice -10
/// where allowed, so that other processes on a loaded machine delay it less. Both directions share one delay, so a
/// chunk read later is never due earlier: the queue stays in due order and one thread suffices.
/// </para>
/// </summary>
internal static class DelayProxy
{
    public const string ChildArgument = "--delay-proxy";

    /// <summary>The child process's main: <c>--delay-proxy host port</c>; prints <c>port N</c>, then obeys <c>delay MICROS</c> lines on stdin.</summary>
    public static async Task RunChildAsync(string host, int port)
    {
        using var forwarder = new Forwarder();
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(256);
        Console.WriteLine($"port {((IPEndPoint)listener.LocalEndPoint!).Port}");
        _ = Task.Run(async () =>
        {
            while (true)
            {
                var client = await listener.AcceptAsync();
                _ = ServeAsync(client, host, port, forwarder);
            }
        });

        while (await Console.In.ReadLineAsync() is { } line)
        {
            var parts = line.Split(' ');
            if (parts is ["delay", var micros])
            {
                forwarder.DelayTicks = (long)(double.Parse(micros, CultureInfo.InvariantCulture) * Stopwatch.Frequency / 1_000_000);
                Console.WriteLine("ok");
            }
            else if (parts is ["quit"])
            {
                break;
            }
        }
    }

    private static async Task ServeAsync(Socket client, string host, int port, Forwarder forwarder)
    {
        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            client.NoDelay = true;
            server.NoDelay = true;
            await server.ConnectAsync(host, port);
            await Task.WhenAll(PumpAsync(client, server, forwarder), PumpAsync(server, client, forwarder));
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            await forwarder.DrainedAsync(client, server);
            client.Dispose();
        }
    }

    private static async Task PumpAsync(Socket from, Socket to, Forwarder forwarder)
    {
        try
        {
            while (true)
            {
                var buffer = ArrayPool<byte>.Shared.Rent(16384);
                var read = await from.ReceiveAsync(buffer.AsMemory(), SocketFlags.None);
                if (read == 0)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    break;
                }

                forwarder.Enqueue(to, buffer, read);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        forwarder.Enqueue(to, null, 0); // the close travels with the same delay, after the bytes before it
    }

    /// <summary>The one thread that forwards each chunk when it is due.</summary>
    private sealed class Forwarder : IDisposable
    {
        private readonly ConcurrentQueue<(long Due, Socket To, byte[]? Buffer, int Length)> _queue = new();
        private readonly ManualResetEventSlim _arrived = new(false, spinCount: 1);
        private readonly ConcurrentDictionary<Socket, int> _pending = new();
        private readonly Thread _thread;
        private volatile bool _stop;

        public Forwarder()
        {
            _thread = new Thread(Run) { IsBackground = true, Name = "delay-proxy forwarder" };
            _thread.Start();
        }

        public long DelayTicks { get; set; }

        public void Enqueue(Socket to, byte[]? buffer, int length)
        {
            _pending.AddOrUpdate(to, 1, (_, n) => n + 1);
            _queue.Enqueue((Stopwatch.GetTimestamp() + DelayTicks, to, buffer, length));
            _arrived.Set();
        }

        /// <summary>Waits until nothing queued for these sockets is left, so none is disposed before its last bytes go out.</summary>
        public async Task DrainedAsync(Socket a, Socket b)
        {
            while (_pending.TryGetValue(a, out var x) && x > 0 || _pending.TryGetValue(b, out var y) && y > 0)
            {
                await Task.Delay(5);
            }

            _pending.TryRemove(a, out _);
            _pending.TryRemove(b, out _);
        }

        private void Run()
        {
            var precise = OperatingSystem.IsLinux() && Stopwatch.Frequency == 1_000_000_000;
            if (precise)
            {
                _ = prctl(PrSetTimerSlack, 1, 0, 0, 0);
                // A network does not wait for a core: give this one mostly sleeping thread a higher scheduling
                // priority (nice -10; ignored without the right to) so that a loaded machine delays it less.
                _ = setpriority(PrioProcess, gettid(), -10);
            }

            while (!_stop)
            {
                _arrived.Reset();
                if (!_queue.TryPeek(out var head))
                {
                    _arrived.Wait();
                    continue;
                }

                if (Stopwatch.GetTimestamp() < head.Due)
                {
                    SleepUntil(head.Due, precise);
                    continue;
                }

                _queue.TryDequeue(out head);
                try
                {
                    if (head.Buffer is null)
                    {
                        head.To.Shutdown(SocketShutdown.Send);
                    }
                    else
                    {
                        head.To.Send(head.Buffer, 0, head.Length, SocketFlags.None);
                    }
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                }
                finally
                {
                    if (head.Buffer is not null)
                    {
                        ArrayPool<byte>.Shared.Return(head.Buffer);
                    }

                    _pending.AddOrUpdate(head.To, 0, (_, n) => n - 1);
                }
            }
        }

        private static void SleepUntil(long due, bool precise)
        {
            if (precise)
            {
                var time = new Timespec { Seconds = due / 1_000_000_000, Nanoseconds = due % 1_000_000_000 };
                _ = clock_nanosleep(ClockMonotonic, TimerAbsolute, ref time, IntPtr.Zero);
                return;
            }

            var spin = new SpinWait();
            while (Stopwatch.GetTimestamp() < due)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }

        public void Dispose()
        {
            _stop = true;
            _arrived.Set();
            _thread.Join(TimeSpan.FromSeconds(1));
            _arrived.Dispose();
        }

        private const int ClockMonotonic = 1;
        private const int TimerAbsolute = 1;
        private const int PrSetTimerSlack = 29;

        [StructLayout(LayoutKind.Sequential)]
        private struct Timespec
        {
            public long Seconds;
            public long Nanoseconds;
        }

        [DllImport("libc", SetLastError = false)]
        private static extern int clock_nanosleep(int clock, int flags, ref Timespec request, IntPtr remain);

        private const int PrioProcess = 0;

        [DllImport("libc", SetLastError = false)]
        private static extern int gettid();

        [DllImport("libc", SetLastError = false)]
        private static extern int setpriority(int which, int who, int priority);

        [DllImport("libc", SetLastError = false)]
        private static extern int prctl(int option, ulong arg2, ulong arg3, ulong arg4, ulong arg5);
    }
}

/// <summary>The parent's handle on a <see cref="DelayProxy"/> child process: its port, its delay, its CPU time.</summary>
internal sealed class DelayProxyProcess : IAsyncDisposable
{
    private readonly Process _process;

    private DelayProxyProcess(Process process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    /// <summary>The one-way delay each direction adds now, in microseconds.</summary>
    public double DelayMicros { get; private set; }

    /// <summary>The proxy process's CPU time so far (user + kernel, all its threads).</summary>
    public TimeSpan Cpu
    {
        get
        {
            _process.Refresh();
            return _process.TotalProcessorTime;
        }
    }

    public static async Task<DelayProxyProcess> StartAsync(string host, int port)
    {
        var self = Environment.ProcessPath!;
        var start = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            start.ArgumentList.Add(typeof(DelayProxy).Assembly.Location);
        }

        foreach (var a in new[] { DelayProxy.ChildArgument, host, port.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(a);
        }

        start.Environment["DOTNET_gcServer"] = "0";
        // A read's continuation (stamp, enqueue) runs on the socket engine's thread instead of hopping to the thread
        // pool, and idle pool threads do not spin: the proxy's CPU is then its forwarding work, not .NET's scheduling.
        start.Environment["DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"] = "1";
        start.Environment["DOTNET_ThreadPool_UnfairSemaphoreSpinLimit"] = "0";
        var process = Process.Start(start)!;
        var line = await process.StandardOutput.ReadLineAsync() ?? throw new InvalidOperationException("the delay proxy exited before it printed its port");
        return new DelayProxyProcess(process, int.Parse(line.Split(' ')[1], CultureInfo.InvariantCulture));
    }

    public async Task SetDelayAsync(double micros)
    {
        await _process.StandardInput.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"delay {micros:F1}"));
        await _process.StandardInput.FlushAsync();
        _ = await _process.StandardOutput.ReadLineAsync();
        DelayMicros = micros;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _process.StandardInput.WriteLineAsync("quit");
            await _process.StandardInput.FlushAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            _process.Kill();
        }

        _process.Dispose();
    }
}
