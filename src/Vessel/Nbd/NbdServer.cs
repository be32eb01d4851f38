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

    /// <summary>
    /// Connections one peer may hold, so that one client cannot take all of them. A peer is the
    /// client process over the unix socket (SO_PEERCRED) and the client address over TCP (where
    /// every local client shares 127.0.0.1: use the unix socket for clients that do not trust each other).
    /// </summary>
    public int MaxConnectionsPerPeer { get; init; } = 64;

    /// <summary>Connections one peer may have in option negotiation at once (half-open handshakes).</summary>
    public int MaxHandshakesPerPeer { get; init; } = 8;

    /// <summary>A client must finish option negotiation within this time; real clients take milliseconds.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Permissions of the unix socket: the owner only unless widened (e.g. 0660 for a group).</summary>
    public UnixFileMode UnixSocketMode { get; init; } = UnixFileMode.UserRead | UnixFileMode.UserWrite;
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
    private readonly Dictionary<string, PeerCount> _peers = new(StringComparer.Ordinal); // under its own lock
    private readonly Dictionary<NbdConnection, string> _peerOf = [];
    private readonly HashSet<NbdConnection> _negotiating = [];
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
        if (Options.TcpEndPoint is { } requested)
        {
            // ::ffff:127.0.0.1 is 127.0.0.1: bind it as IPv4 (an IPv6 socket may not bind a mapped address).
            IPEndPoint ep = requested.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(requested.Address.MapToIPv4(), requested.Port) : requested;
            if (!IPAddress.IsLoopback(ep.Address))
            {
                throw new VesselException(VesselErrorReason.InvalidInput,
                    $"{ep} is not a loopback address: NBD has no authentication, so Vessel serves TCP only on 127.0.0.1 or ::1.");
            }
            var tcp = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            _listeners.Add(tcp);
            try
            {
                tcp.Bind(ep);
            }
            catch (SocketException e)
            {
                throw new VesselException(VesselErrorReason.Unavailable, $"cannot listen on {ep}: {e.Message}", e);
            }
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
        try
        {
            unix.Bind(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException e)
        {
            throw new VesselException(VesselErrorReason.Unavailable, $"cannot listen on '{path}': {e.Message}", e);
        }
        _socketFileCreated = true;
        // Before listen(): until then a connect is refused, so nobody slips in under the umask's mode.
        if (OperatingSystem.IsLinux())
        {
            File.SetUnixFileMode(path, Options.UnixSocketMode);
        }
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
            string peer = PeerOf(client);
            if (!TryAdmit(peer, out string? refusal))
            {
                NbdLog.PeerRefused(_logger, peer, refusal);
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
            lock (_peers)
            {
                _peerOf[connection] = peer;
                _negotiating.Add(connection);
            }
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
            Release(connection);
            _connections.TryRemove(connection, out _);
        }
    }

    /// <summary>Called by a connection when its option negotiation is over: it no longer holds a handshake slot.</summary>
    internal void NegotiationFinished(NbdConnection connection)
    {
        lock (_peers)
        {
            if (_negotiating.Remove(connection) && _peerOf.TryGetValue(connection, out string? peer))
            {
                _peers[peer] = _peers[peer] with { Negotiating = _peers[peer].Negotiating - 1 };
            }
        }
    }

    private bool TryAdmit(string peer, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? refusal)
    {
        lock (_peers)
        {
            PeerCount count = _peers.GetValueOrDefault(peer);
            refusal = count.Connections >= Options.MaxConnectionsPerPeer ? $"it holds {count.Connections} connections, the most one peer may"
                : count.Negotiating >= Options.MaxHandshakesPerPeer ? $"it has {count.Negotiating} handshakes unfinished, the most one peer may"
                : null;
            if (refusal is null)
            {
                _peers[peer] = new PeerCount(count.Connections + 1, count.Negotiating + 1);
            }
            return refusal is null;
        }
    }

    private void Release(NbdConnection connection)
    {
        lock (_peers)
        {
            if (!_peerOf.Remove(connection, out string? peer))
            {
                return;
            }
            PeerCount count = _peers[peer];
            count = new PeerCount(count.Connections - 1, count.Negotiating - (_negotiating.Remove(connection) ? 1 : 0));
            if (count.Connections == 0)
            {
                _peers.Remove(peer);
            }
            else
            {
                _peers[peer] = count;
            }
        }
    }

    /// <summary>The client process over a unix socket (SO_PEERCRED: pid, uid, gid), the client address over TCP.</summary>
    private static string PeerOf(Socket client)
    {
        if (client.AddressFamily == AddressFamily.Unix)
        {
            Span<byte> cred = stackalloc byte[12];
            const int SolSocket = 1;
            const int SoPeerCred = 17;
            if (client.GetRawSocketOption(SolSocket, SoPeerCred, cred) == cred.Length)
            {
                return $"pid {System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(cred)}";
            }
            return "unix";
        }
        return (client.RemoteEndPoint as IPEndPoint)?.Address.ToString() ?? "unknown";
    }

    private readonly record struct PeerCount(int Connections, int Negotiating);
}
