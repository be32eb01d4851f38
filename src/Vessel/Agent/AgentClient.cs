using System.Net.Sockets;
using System.Security.Cryptography;
using Vessel.Agent.Protocol;
using Vessel.Common;
using Vessel.Interop;

namespace Vessel.Agent;

/// <summary>
/// The host's side of the agent protocol over one connection (a unix socket: QEMU's
/// virtio-serial chardev, or the agent itself in tests). Cheap to drop and re-create: the
/// agent keeps its processes across connections, and <see cref="AttachAsync"/> picks them up.
/// </summary>
public sealed class AgentClient : IAsyncDisposable
{
    private readonly MuxConnection _mux;
    private readonly string _token;
    private readonly string _container;
    private readonly bool _ownsConnection;

    private AgentClient(MuxConnection mux, string token, HelloOkMessage hello, string container = "", bool ownsConnection = true)
    {
        _mux = mux;
        _token = token;
        _container = container;
        _ownsConnection = ownsConnection;
        Hello = hello;
    }

    /// <summary>
    /// The same connection with every file request and exec aimed at a pod's container (its overlay
    /// root and namespaces). Disposing the view leaves the connection open.
    /// </summary>
    public AgentClient InContainer(string name) => new(_mux, _token, Hello, name, ownsConnection: false);

    /// <summary>Starts a pod's container (overlay root over the image disk <paramref name="lower"/>, new namespaces); returns its first process's pid.</summary>
    public async Task<int> StartContainerAsync(string name, string lower, uint upperMiB, ExecRequest process, CancellationToken cancellationToken)
    {
        var message = new ContainerStartRequest(_token, name, lower, upperMiB, process.Arguments, process.Environment, process.WorkingDirectory ?? string.Empty, process.User ?? string.Empty);
        using MuxStream s = await RequestAsync(MessageType.ContainerStart, message.Encode(), cancellationToken);
        Frame started = await ExpectAsync(s, MessageType.ExecStarted, $"start container {name}", cancellationToken);
        return ExecStartedMessage.Decode(started.Payload).Pid;
    }

    /// <summary>The pod's containers: running, or exited with their code.</summary>
    public async Task<IReadOnlyList<ContainerStatus>> ListContainersAsync(CancellationToken cancellationToken)
    {
        using MuxStream s = await RequestAsync(MessageType.ContainerList, new TokenOnlyRequest(_token).Encode(), cancellationToken);
        return ContainerStatus.DecodeList((await ExpectAsync(s, MessageType.ContainerListResult, "list containers", cancellationToken)).Payload);
    }

    /// <summary>The agent's greeting: its version and boot timings.</summary>
    public HelloOkMessage Hello { get; }

    public bool IsConnected => !_mux.IsClosed;

    /// <summary>Whether the agent answers <see cref="ExecSession.DetachAsync"/> (agents in snapshots older than it do not).</summary>
    public bool CanDetach => Hello.AgentVersion == AgentProtocol.AgentVersion;

    /// <summary>
    /// Connects to <paramref name="socketPath"/>, retrying until the socket accepts, then waits for
    /// the agent to answer the hello (it may still be booting). <paramref name="cancellationToken"/>
    /// should also fire when the VM dies, so a dead guest is not waited for until the timeout.
    /// </summary>
    public static async Task<AgentClient> ConnectAsync(string socketPath, string token, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        Socket? socket = null;
        try
        {
            socket = await UnixSocket.ConnectWhenListeningAsync(socketPath, TimeSpan.FromMilliseconds(20), deadline.Token);
            var stream = new NetworkStream(socket, ownsSocket: true);
            socket = null;
            ulong nonce = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
            byte[] hello = new HelloMessage(AgentProtocol.Version, token, nonce).Encode();
            byte[] frame = new byte[FrameHeader.Size + hello.Length];
            new FrameHeader((uint)hello.Length, MessageType.Hello, 0).Write(frame);
            hello.CopyTo(frame, FrameHeader.Size);
            try
            {
                await stream.WriteAsync(frame, deadline.Token);
                (HelloOkMessage ok, byte[] leftover) = await SyncAsync(stream, nonce, deadline.Token);
                var mux = new MuxConnection(new PrefixedStream(leftover, stream, leaveOpen: false));
                mux.Start();
                return new AgentClient(mux, token, ok);
            }
            catch
            {
                await stream.DisposeAsync();
                throw;
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"The guest agent did not answer on {socketPath} within {timeout.TotalSeconds:0.#} s.");
        }
        catch (IOException e)
        {
            throw new VesselException(VesselErrorReason.Unavailable, $"The guest agent connection on {socketPath} broke: {e.Message}", e);
        }
        finally
        {
            socket?.Dispose();
        }
    }

    public async Task<HealthOkMessage> HealthAsync(CancellationToken cancellationToken)
    {
        using MuxStream s = await RequestAsync(MessageType.Health, new TokenOnlyRequest(_token).Encode(), cancellationToken);
        Frame reply = await ExpectAsync(s, MessageType.HealthOk, "health", cancellationToken);
        return HealthOkMessage.Decode(reply.Payload);
    }

    /// <summary>Asks the agent to kill its processes, sync and power the guest off.</summary>
    public async Task ShutdownAsync(CancellationToken cancellationToken)
    {
        using MuxStream s = await RequestAsync(MessageType.Shutdown, new TokenOnlyRequest(_token).Encode(), cancellationToken);
        await ExpectAsync(s, MessageType.Ok, "shutdown", cancellationToken);
    }

    public async Task<ExecSession> StartAsync(ExecRequest request, CancellationToken cancellationToken)
    {
        uint timeout = request.Timeout is { } t ? (uint)Math.Clamp(t.TotalMilliseconds, 1, uint.MaxValue) : 0;
        string cwd = request.WorkingDirectory ?? string.Empty;
        string user = request.User ?? string.Empty;
        string container = request.Container ?? _container;
        MuxStream s = request.Terminal is { } size
            ? await RequestAsync(MessageType.ExecTerminal, new ExecTerminalRequest(_token, request.Arguments, request.Environment, cwd, user, timeout, container, size).Encode(), cancellationToken)
            : await RequestAsync(MessageType.ExecStart, new ExecStartRequest(_token, request.Arguments, request.Environment, cwd, user, request.Stdin, timeout, container).Encode(), cancellationToken);
        try
        {
            Frame started = await ExpectAsync(s, MessageType.ExecStarted, "exec " + (request.Arguments.Count > 0 ? request.Arguments[0] : string.Empty), cancellationToken);
            return new ExecSession(s, ExecStartedMessage.Decode(started.Payload).Pid, CanDetach);
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>Re-attaches to a process started on an earlier connection: its remaining output and its exit.</summary>
    public async Task<ExecSession> AttachAsync(int pid, CancellationToken cancellationToken)
    {
        MuxStream s = await RequestAsync(MessageType.ExecAttach, new ExecAttachRequest(_token, pid).Encode(), cancellationToken);
        try
        {
            Frame started = await ExpectAsync(s, MessageType.ExecStarted, $"attach to process {pid}", cancellationToken);
            return new ExecSession(s, ExecStartedMessage.Decode(started.Payload).Pid, CanDetach);
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>Streams a file of the sandbox into <paramref name="destination"/>; returns its length.</summary>
    public async Task<long> ReadFileAsync(string path, Stream destination, CancellationToken cancellationToken)
    {
        using MuxStream s = await RequestAsync(MessageType.FileRead, new PathRequest(_token, path, _container).Encode(), cancellationToken);
        long total = 0;
        while (true)
        {
            Frame f = await NextAsync(s, "read " + path, cancellationToken);
            switch (f.Type)
            {
                case MessageType.FileData:
                    await destination.WriteAsync(f.Payload, cancellationToken);
                    total += f.Payload.Length;
                    break;
                case MessageType.FileEnd:
                    return total;
                default:
                    throw Unexpected(f, "read " + path);
            }
        }
    }

    /// <summary>Streams <paramref name="source"/> into a file of the sandbox; the file appears whole or not at all.</summary>
    public async Task WriteFileAsync(string path, Stream source, uint mode, CancellationToken cancellationToken)
    {
        using MuxStream s = await RequestAsync(MessageType.FileWrite, new PathModeRequest(_token, path, mode, false, _container).Encode(), cancellationToken);
        byte[] buffer = new byte[MuxConnection.MaxDataChunk];
        try
        {
            int n;
            while ((n = await source.ReadAsync(buffer, cancellationToken)) > 0)
            {
                await s.SendDataAsync(MessageType.FileData, buffer.AsMemory(0, n), cancellationToken);
            }
        }
        catch (OperationCanceledException)
        {
            await TrySendAsync(s, MessageType.Cancel);
            throw;
        }
        await s.SendAsync(MessageType.FileEnd, [], cancellationToken);
        await ExpectAsync(s, MessageType.Ok, "write " + path, cancellationToken);
    }

    public async Task<FileEntry> StatAsync(string path, CancellationToken cancellationToken)
    {
        using MuxStream s = await RequestAsync(MessageType.Stat, new PathRequest(_token, path, _container).Encode(), cancellationToken);
        return FileEntry.Decode((await ExpectAsync(s, MessageType.StatResult, "stat " + path, cancellationToken)).Payload);
    }

    public async Task<IReadOnlyList<FileEntry>> ListAsync(string path, CancellationToken cancellationToken)
    {
        using MuxStream s = await RequestAsync(MessageType.List, new PathRequest(_token, path, _container).Encode(), cancellationToken);
        return FileEntry.DecodeList((await ExpectAsync(s, MessageType.ListResult, "list " + path, cancellationToken)).Payload);
    }

    public Task MkdirAsync(string path, uint mode, bool parents, CancellationToken cancellationToken)
        => SimpleAsync(MessageType.Mkdir, new PathModeRequest(_token, path, mode, parents, _container).Encode(), "mkdir " + path, cancellationToken);

    public Task RemoveAsync(string path, bool recursive, CancellationToken cancellationToken)
        => SimpleAsync(MessageType.Remove, new PathModeRequest(_token, path, 0, recursive, _container).Encode(), "remove " + path, cancellationToken);

    public Task RenameAsync(string from, string to, CancellationToken cancellationToken)
        => SimpleAsync(MessageType.Rename, new RenameRequest(_token, from, to, _container).Encode(), $"rename {from} to {to}", cancellationToken);

    /// <summary>Sets the guest's wall clock to <paramref name="time"/> (with nanoseconds), e.g. the host's now after a boot or a restore.</summary>
    public Task SetTimeAsync(DateTimeOffset time, CancellationToken cancellationToken)
        => SimpleAsync(MessageType.SetTime, new SetTimeRequest(_token, (time - DateTimeOffset.UnixEpoch).Ticks * 100).Encode(), "set-time", cancellationToken);

    public ValueTask DisposeAsync() => _ownsConnection ? _mux.DisposeAsync() : ValueTask.CompletedTask;

    internal static async Task<Frame> NextAsync(MuxStream s, string what, CancellationToken cancellationToken)
    {
        Frame? f = await s.ReadAsync(cancellationToken);
        if (f is null)
        {
            throw new VesselException(VesselErrorReason.Unavailable, $"{what}: the guest agent connection closed before the answer.", s.Connection.Fault);
        }
        if (f.Type == MessageType.Error)
        {
            ErrorMessage e = ErrorMessage.Decode(f.Payload);
            throw new AgentException(e.Code, $"{what}: {e.Message}");
        }
        return f;
    }

    internal static Exception Unexpected(Frame f, string what)
        => new VesselException(VesselErrorReason.Protocol, $"{what}: the guest agent sent an unexpected {f.Type} message.");

    private async Task SimpleAsync(MessageType type, byte[] payload, string what, CancellationToken cancellationToken)
    {
        using MuxStream s = await RequestAsync(type, payload, cancellationToken);
        await ExpectAsync(s, MessageType.Ok, what, cancellationToken);
    }

    private async Task<MuxStream> RequestAsync(MessageType type, byte[] payload, CancellationToken cancellationToken)
    {
        MuxStream s = _mux.OpenStream();
        try
        {
            await s.SendAsync(type, payload, cancellationToken);
            return s;
        }
        catch (IOException e)
        {
            s.Dispose();
            throw new VesselException(VesselErrorReason.Unavailable, $"The guest agent connection is closed: {e.Message}", e);
        }
    }

    private static async Task<Frame> ExpectAsync(MuxStream s, MessageType type, string what, CancellationToken cancellationToken)
    {
        Frame f = await NextAsync(s, what, cancellationToken);
        return f.Type == type ? f : throw Unexpected(f, what);
    }

    private static async Task TrySendAsync(MuxStream s, MessageType type)
    {
        try
        {
            await s.SendAsync(type, [], CancellationToken.None);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>
    /// Skips bytes up to the sync marker followed by a HelloOk echoing our nonce. Bytes before it
    /// are what an earlier session left in the channel (or a guest's attempt to forge a reply,
    /// which cannot know the nonce).
    /// </summary>
    private static async Task<(HelloOkMessage Hello, byte[] Leftover)> SyncAsync(Stream stream, ulong nonce, CancellationToken cancellationToken)
    {
        byte[] marker = AgentProtocol.SyncMarker.ToArray();
        var pending = new List<byte>();
        byte[] buffer = new byte[64 * 1024];
        int scanFrom = 0;
        while (true)
        {
            while (true)
            {
                int at = IndexOf(pending, marker, scanFrom);
                if (at < 0)
                {
                    scanFrom = Math.Max(0, pending.Count - marker.Length + 1);
                    break;
                }
                int headerAt = at + marker.Length;
                if (pending.Count < headerAt + FrameHeader.Size)
                {
                    scanFrom = at;
                    break;
                }
                FrameHeader header;
                try
                {
                    header = FrameHeader.Read(pending.GetRange(headerAt, FrameHeader.Size).ToArray());
                }
                catch (AgentProtocolException)
                {
                    scanFrom = at + 1;
                    continue;
                }
                int end = headerAt + FrameHeader.Size + (int)header.Length;
                if (pending.Count < end)
                {
                    scanFrom = at;
                    break;
                }
                byte[] payload = pending.GetRange(headerAt + FrameHeader.Size, (int)header.Length).ToArray();
                if (header.StreamId == 0 && header.Type == MessageType.Error)
                {
                    ErrorMessage e = ErrorMessage.Decode(payload);
                    throw new AgentException(e.Code, "The guest agent refused the session: " + e.Message);
                }
                if (header.StreamId == 0 && header.Type == MessageType.HelloOk)
                {
                    try
                    {
                        HelloOkMessage ok = HelloOkMessage.Decode(payload);
                        if (ok.Nonce == nonce)
                        {
                            if (ok.Version != AgentProtocol.Version)
                            {
                                throw new VesselException(VesselErrorReason.Protocol, $"The guest agent speaks protocol version {ok.Version}, Vessel speaks {AgentProtocol.Version}: rebuild the kit (vessel kit build).");
                            }
                            return (ok, pending.GetRange(end, pending.Count - end).ToArray());
                        }
                    }
                    catch (AgentProtocolException)
                    {
                    }
                }
                scanFrom = at + 1;
            }
            int n = await stream.ReadAsync(buffer, cancellationToken);
            if (n == 0)
            {
                throw new IOException("the channel closed before the agent answered (did the VM stop?)");
            }
            pending.AddRange(buffer.AsSpan(0, n));
        }
    }

    private static int IndexOf(List<byte> haystack, byte[] needle, int from)
    {
        for (int i = from; i <= haystack.Count - needle.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j])
            {
                j++;
            }
            if (j == needle.Length)
            {
                return i;
            }
        }
        return -1;
    }
}

/// <summary>A failure the agent reported, with its errno.</summary>
public sealed class AgentException : VesselException
{
    public AgentException(int code, string message)
        : base(code switch
        {
            2 => VesselErrorReason.NotFound,
            17 => VesselErrorReason.AlreadyExists,
            22 => VesselErrorReason.InvalidInput,
            _ => VesselErrorReason.ToolFailed,
        }, message)
    {
        Code = code;
    }

    /// <summary>The Linux errno the agent reported.</summary>
    public int Code { get; }
}
