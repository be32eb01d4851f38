using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vessel.Blocks;
using Vessel.Interop;

namespace Vessel.Nbd;

/// <summary>Where the server listens and how much it lets each client do.</summary>
internal sealed record NbdServerOptions
{
    /// <summary>A unix socket path (QEMU: <c>nbd+unix:///EXPORT?socket=PATH</c>).</summary>
    public string? UnixSocketPath { get; init; }

    /// <summary>A loopback TCP endpoint; port 0 picks a free port (see <see cref="NbdServer.TcpEndPoint"/>).</summary>
    public IPEndPoint? TcpEndPoint { get; init; }

    /// <summary>Requests one connection may have in flight; more wait until one completes.</summary>
    public int MaxRequestsInFlight { get; init; } = 64;

    public int MaxConnections { get; init; } = 256;

    /// <summary>A client must finish option negotiation within this time.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// An NBD server (NetworkBlockDevice doc/proto.md, fixed newstyle) over a unix socket and/or
/// loopback TCP, serving several exports to several clients at once. It runs inside the
/// calling process: <see cref="StartAsync"/> binds and returns, <see cref="DisposeAsync"/>
/// closes every connection, waits for them, and removes the socket file.
/// </summary>
internal sealed class NbdServer : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, NbdExport> _exports = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<NbdConnection, Task> _connections = new();
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private bool _socketFileCreated;
    private int _disposed;

    public NbdServer(NbdServerOptions options, ILoggerFactory? loggerFactory = null)
    {
        if (options.UnixSocketPath is null && options.TcpEndPoint is null)
        {
            throw new ArgumentException("Give a unix socket path, a TCP endpoint, or both.", nameof(options));
        }
        Options = options;
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        _logger = _loggerFactory.CreateLogger<NbdServer>();
    }

    public NbdServerOptions Options { get; }

    /// <summary>The bound TCP endpoint (with the real port when 0 was asked for), or null.</summary>
    public IPEndPoint? TcpEndPoint { get; private set; }

    public int ConnectionCount => _connections.Count;

    /// <summary>
    /// Request and reply buffers. The shared pool keeps only a few large arrays per size, so at
    /// 64 requests in flight on several connections most reads would allocate; this one keeps enough.
    /// </summary>
    internal ArrayPool<byte> Buffers { get; } = ArrayPool<byte>.Create(NbdProtocol.MaxPayload + 64, 256);

    public IReadOnlyCollection<NbdExport> Exports => [.. _exports.Values];

    /// <summary>Serves <paramref name="device"/> (still owned by the caller) as <paramref name="name"/>; connections opened from now on can use it.</summary>
    public void AddExport(string name, IBlockDevice device, bool readOnly = false, string? description = null)
    {
        if (!_exports.TryAdd(name, new NbdExport(name, device, readOnly, description ?? string.Empty)))
        {
            throw new VesselException(VesselErrorReason.AlreadyExists, $"an export named '{name}' is already served.");
        }
    }

    /// <summary>Stops offering an export to new clients (connected ones keep it until they disconnect).</summary>
    public bool RemoveExport(string name) => _exports.TryRemove(name, out _);

    internal bool TryGetExport(string name, out NbdExport export) => _exports.TryGetValue(name, out export!);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (Options.UnixSocketPath is { } path)
        {
            BindUnix(Path.GetFullPath(path));
        }
        if (Options.TcpEndPoint is { } ep)
        {
            if (!IPAddress.IsLoopback(ep.Address))
            {
                throw new VesselException(VesselErrorReason.InvalidInput,
                    $"{ep} is not a loopback address: NBD has no authentication, so Vessel serves TCP only on 127.0.0.1 or ::1.");
            }
            var tcp = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            _listeners.Add(tcp);
            tcp.Bind(ep);
            tcp.Listen(64);
            TcpEndPoint = (IPEndPoint)tcp.LocalEndPoint!;
            NbdLog.Listening(_logger, TcpEndPoint.ToString());
        }
        foreach (Socket listener in _listeners)
        {
            _acceptLoops.Add(AcceptLoopAsync(listener));
        }
        return Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stopping.Cancel();
        foreach (Socket l in _listeners)
        {
            l.Dispose();
        }
        await Task.WhenAll(_acceptLoops);
        foreach (NbdConnection c in _connections.Keys)
        {
            c.Abort();
        }
        Task all = Task.WhenAll(_connections.Values);
        // Connections drain in-flight requests; one stuck in its export must not hang disposal.
        if (await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(10))) != all)
        {
            NbdLog.DisposeTimedOut(_logger, _connections.Count);
        }
        if (_socketFileCreated && Options.UnixSocketPath is { } path)
        {
            try
            {
                File.Delete(Path.GetFullPath(path));
            }
            catch (DirectoryNotFoundException)
            {
                // Its directory is gone already: so is the socket.
            }
        }
        _stopping.Dispose();
    }

    private void BindUnix(string path)
    {
        if (File.Exists(path) || Directory.Exists(path) || UnixFile.IsSocket(path))
        {
            if (!UnixFile.IsSocket(path) || !IsStaleSocket(path))
            {
                throw new VesselException(VesselErrorReason.AlreadyExists, $"'{path}' exists and is not a stale socket; pick another --socket path or stop the server using it.");
            }
            File.Delete(path);
        }
        var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listeners.Add(unix);
        unix.Bind(new UnixDomainSocketEndPoint(path));
        _socketFileCreated = true;
        unix.Listen(64);
        NbdLog.Listening(_logger, path);
    }

    /// <summary>True when <paramref name="path"/> is a socket nobody listens on (a crashed server's leftover).</summary>
    private static bool IsStaleSocket(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return false;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            return true;
        }
        catch (SocketException)
        {
            return false; // some other failure: leave the path alone
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopping.Token);
            }
            catch (Exception e) when ((e is OperationCanceledException or ObjectDisposedException or SocketException) && _stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                NbdLog.AcceptFailed(_logger, e);
                continue;
            }
            if (_connections.Count >= Options.MaxConnections)
            {
                NbdLog.TooManyConnections(_logger, Options.MaxConnections);
                client.Dispose();
                continue;
            }
            if (client.AddressFamily != AddressFamily.Unix)
            {
                client.NoDelay = true;
            }
            // A large send buffer lets most read replies go out in one non-blocking send instead
            // of waiting for the client to drain the default ~200 KiB (capped by net.core.wmem_max).
            client.SendBufferSize = 4 << 20;
            var connection = new NbdConnection(this, client, _loggerFactory.CreateLogger<NbdConnection>(), _stopping.Token);
            var started = new TaskCompletionSource();
            Task run = RunConnectionAsync(connection, started.Task);
            _connections[connection] = run;
            started.SetResult();
        }
    }

    private async Task RunConnectionAsync(NbdConnection connection, Task registered)
    {
        await registered;
        try
        {
            await connection.RunAsync();
        }
        finally
        {
            await connection.DisposeAsync();
            _connections.TryRemove(connection, out _);
        }
    }
}
