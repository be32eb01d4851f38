using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Vessel.Agent.Protocol;

namespace Vessel.Agent;

/// <summary>
/// Serves host sessions one after another on a transport. Processes outlive sessions: a host
/// that reconnects re-attaches to them by pid.
/// </summary>
internal sealed class AgentServer
{
    private readonly RootFs? _rootFs;
    private readonly string? _rootError;
    private readonly byte[] _token;
    private readonly ulong _startUptimeMs;
    private readonly ConcurrentDictionary<int, AgentProcess> _processes = new();
    private readonly Pod _pod = new();
    private readonly CancellationTokenSource _shutdown = new();

    public AgentServer(string root, string token, ulong startUptimeMs)
    {
        _token = Encoding.UTF8.GetBytes(token);
        _startUptimeMs = startUptimeMs;
        try
        {
            _rootFs = new RootFs(root);
        }
        catch (AgentErrorException e)
        {
            // Keep serving: health reports the rootfs as missing, and the host shows why.
            _rootError = e.Message;
        }
    }

    public CancellationToken ShutdownRequested => _shutdown.Token;

    public async Task ServeAsync(IAgentTransport transport, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _shutdown.Token);
        while (!linked.IsCancellationRequested)
        {
            Stream stream;
            try
            {
                stream = await transport.AcceptAsync(linked.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            MuxConnection? connection = null;
            connection = new MuxConnection(
                stream,
                (s, first) => HandleRequestAsync(s, first),
                frame => HandleControlAsync(connection!, frame));
            connection.Start();
            try
            {
                await connection.Completion.WaitAsync(linked.Token);
            }
            catch (OperationCanceledException)
            {
            }
            if (connection.Fault is { } fault)
            {
                Console.Error.WriteLine($"vessel-agent: session ended: {fault.GetType().Name}: {fault.Message}");
            }
            await connection.DisposeAsync();
        }
    }

    public void KillAll()
    {
        _pod.KillAll();
        foreach (AgentProcess p in _processes.Values)
        {
            p.Signal(9);
        }
    }

    private async Task HandleControlAsync(MuxConnection connection, Frame frame)
    {
        if (frame.Type != MessageType.Hello)
        {
            return;
        }
        HelloMessage hello = HelloMessage.Decode(frame.Payload);
        // A hello starts a new session, also on a channel we thought was still in use: the old
        // session's streams end and their processes wait for a re-attach.
        connection.ResetStreams();
        await connection.WriteRawAsync(AgentProtocol.SyncMarker.ToArray(), CancellationToken.None);
        if (!TokenMatches(hello.Token))
        {
            await connection.WriteFrameAsync(MessageType.Error, 0, new ErrorMessage(LibC.Eacces, "wrong sandbox token").Encode(), CancellationToken.None);
            return;
        }
        var ok = new HelloOkMessage(AgentProtocol.Version, hello.Nonce, AgentProtocol.AgentVersion, UptimeMilliseconds(), _startUptimeMs);
        await connection.WriteFrameAsync(MessageType.HelloOk, 0, ok.Encode(), CancellationToken.None);
    }

    private async Task HandleRequestAsync(MuxStream stream, Frame request)
    {
        try
        {
            string token = ReadToken(request.Payload);
            if (!TokenMatches(token))
            {
                throw new AgentErrorException(LibC.Eacces, "wrong sandbox token");
            }
            switch (request.Type)
            {
                case MessageType.Shutdown:
                    KillAll();
                    Native.Sync();
                    await stream.SendAsync(MessageType.Ok, [], CancellationToken.None);
                    await _shutdown.CancelAsync();
                    break;
                case MessageType.ExecStart:
                    await ExecAsync(stream, ExecStartRequest.Decode(request.Payload), terminal: null);
                    break;
                case MessageType.ExecTerminal:
                    {
                        ExecTerminalRequest m = ExecTerminalRequest.Decode(request.Payload);
                        await ExecAsync(stream, m.ToExecStart(), m.Size);
                        break;
                    }
                case MessageType.ExecAttach:
                    await AttachAsync(stream, ExecAttachRequest.Decode(request.Payload));
                    break;
                case MessageType.FileRead:
                    await ReadFileAsync(stream, PathRequest.Decode(request.Payload));
                    break;
                case MessageType.FileWrite:
                    await WriteFileAsync(stream, PathModeRequest.Decode(request.Payload));
                    break;
                default:
                    (MessageType type, byte[] payload) = Answer(request.Type, request.Payload);
                    await stream.SendAsync(type, payload, CancellationToken.None);
                    break;
            }
        }
        catch (AgentErrorException e)
        {
            await TrySendErrorAsync(stream, e.Code, e.Message);
        }
        catch (AgentProtocolException e)
        {
            await TrySendErrorAsync(stream, LibC.Einval, "bad request: " + e.Message);
        }
        catch (IOException)
        {
            // The connection went away while we answered.
        }
        catch (Exception e)
        {
            await TrySendErrorAsync(stream, LibC.Einval, $"agent failure: {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>
    /// The requests that do their work at once and answer with one message: the message, or
    /// <see cref="AgentErrorException"/> for the caller to send as an Error.
    /// </summary>
    private (MessageType Type, byte[] Payload) Answer(MessageType type, ReadOnlySpan<byte> payload)
    {
        switch (type)
        {
            case MessageType.Health:
                return (MessageType.HealthOk, new HealthOkMessage(UptimeMilliseconds(), _rootFs is not null, (uint)_processes.Count).Encode());
            case MessageType.Stat:
                PathRequest stat = PathRequest.Decode(payload);
                return (MessageType.StatResult, Root(stat.Container).Stat(stat.Path).Encode());
            case MessageType.List:
                PathRequest list = PathRequest.Decode(payload);
                return (MessageType.ListResult, FileEntry.EncodeList(Root(list.Container).List(list.Path)));
            case MessageType.ContainerStart:
                Container started = _pod.Start(ContainerStartRequest.Decode(payload));
                return (MessageType.ExecStarted, new ExecStartedMessage(started.Pid).Encode());
            case MessageType.ContainerList:
                return (MessageType.ContainerListResult, ContainerStatus.EncodeList(_pod.List()));
            case MessageType.Mkdir:
                PathModeRequest mkdir = PathModeRequest.Decode(payload);
                Root(mkdir.Container).Mkdir(mkdir.Path, mkdir.Mode, mkdir.Flag);
                return (MessageType.Ok, []);
            case MessageType.Remove:
                PathModeRequest remove = PathModeRequest.Decode(payload);
                Root(remove.Container).Remove(remove.Path, remove.Flag);
                return (MessageType.Ok, []);
            case MessageType.SetTime:
                Native.SetRealtimeClock(SetTimeRequest.Decode(payload).UnixNanoseconds);
                return (MessageType.Ok, []);
            case MessageType.Rename:
                RenameRequest rename = RenameRequest.Decode(payload);
                Root(rename.Container).Rename(rename.From, rename.To);
                return (MessageType.Ok, []);
            default:
                throw new AgentErrorException(LibC.Einval, $"unknown request {type}");
        }
    }

    private RootFs Root() => _rootFs ?? throw new AgentErrorException(LibC.Enoent, "the sandbox rootfs is not mounted: " + _rootError);

    /// <summary>The sandbox's rootfs, or a pod container's overlay root when a container is named.</summary>
    private RootFs Root(string container) => container.Length == 0 ? Root() : _pod.Get(container).Root;

    private async Task ExecAsync(MuxStream stream, ExecStartRequest request, TerminalSize? terminal)
    {
        AgentProcess process;
        if (request.Container.Length == 0)
        {
            process = AgentProcess.Start(Root(), request, enterNamespaces: null, terminal);
        }
        else if (terminal is not null)
        {
            // The container's devpts is a new instance inside its mount namespace, out of the agent's reach.
            throw new AgentErrorException(LibC.Einval, $"exec in container {request.Container}: a terminal in a pod's container is not supported");
        }
        else
        {
            Container container = _pod.Get(request.Container);
            process = AgentProcess.Start(container.Root, container.ForExec(request), container.EnterNamespaces);
        }
        _processes[process.Pid] = process;
        _ = process.Finished.ContinueWith(_ => _processes.TryRemove(process.Pid, out AgentProcess? _), TaskScheduler.Default);
        await stream.SendAsync(MessageType.ExecStarted, new ExecStartedMessage(process.Pid).Encode(), CancellationToken.None);
        await ServeAttachmentAsync(stream, process);
    }

    private async Task AttachAsync(MuxStream stream, ExecAttachRequest request)
    {
        if (!_processes.TryGetValue(request.Pid, out AgentProcess? process))
        {
            throw new AgentErrorException(3 /* ESRCH */, $"no process {request.Pid.ToString(CultureInfo.InvariantCulture)} started by the host is running or waiting to report its exit");
        }
        await stream.SendAsync(MessageType.ExecStarted, new ExecStartedMessage(process.Pid).Encode(), CancellationToken.None);
        await ServeAttachmentAsync(stream, process);
    }

    private static async Task ServeAttachmentAsync(MuxStream stream, AgentProcess process)
    {
        Task attachment = process.AttachAsync(stream);
        Task inbound = Task.Run(async () =>
        {
            while (await stream.ReadAsync(CancellationToken.None) is { } frame)
            {
                switch (frame.Type)
                {
                    case MessageType.Stdin:
                        await process.WriteStdinAsync(frame.Payload);
                        break;
                    case MessageType.StdinClose:
                        process.CloseStdin();
                        break;
                    case MessageType.Signal:
                        process.Signal(SignalMessage.Decode(frame.Payload).Signal);
                        break;
                    case MessageType.Resize:
                        process.Resize(TerminalSize.Decode(frame.Payload));
                        break;
                    case MessageType.ExecDetach:
                        await process.DetachRequestedAsync(stream);
                        break;
                    default:
                        break;
                }
            }
            process.Detach(stream);
        });
        await Task.WhenAny(attachment, inbound);
        process.Detach(stream);
    }

    private async Task ReadFileAsync(MuxStream stream, PathRequest request)
    {
        using Microsoft.Win32.SafeHandles.SafeFileHandle handle = Root(request.Container).OpenRead(request.Path);
        byte[] buffer = new byte[MuxConnection.MaxDataChunk];
        long offset = 0;
        int n;
        while ((n = await RandomAccess.ReadAsync(handle, buffer, offset)) > 0)
        {
            await stream.SendDataAsync(MessageType.FileData, buffer.AsMemory(0, n), CancellationToken.None);
            offset += n;
        }
        await stream.SendAsync(MessageType.FileEnd, [], CancellationToken.None);
    }

    private async Task WriteFileAsync(MuxStream stream, PathModeRequest request)
    {
        RootFs root = Root(request.Container);
        using PendingWrite write = root.BeginWrite(request.Path, request.Mode);
        long offset = 0;
        while (true)
        {
            Frame? frame = await stream.ReadAsync(CancellationToken.None);
            if (frame is null || frame.Type == MessageType.Cancel)
            {
                return; // Disposal removes the temporary file.
            }
            if (frame.Type == MessageType.FileData)
            {
                await RandomAccess.WriteAsync(write.Handle, frame.Payload, offset);
                offset += frame.Payload.Length;
            }
            else if (frame.Type == MessageType.FileEnd)
            {
                break;
            }
        }
        root.CommitWrite(write, request.Path);
        await stream.SendAsync(MessageType.Ok, [], CancellationToken.None);
    }

    private static async Task TrySendErrorAsync(MuxStream stream, int code, string message)
    {
        try
        {
            await stream.SendAsync(MessageType.Error, new ErrorMessage(code, message).Encode(), CancellationToken.None);
        }
        catch (IOException)
        {
        }
    }

    private static string ReadToken(byte[] payload)
    {
        var r = new PayloadReader(payload);
        return r.String();
    }

    private bool TokenMatches(string token) => CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(token), _token);

    public static ulong UptimeMilliseconds()
    {
        try
        {
            string text = File.ReadAllText("/proc/uptime");
            double seconds = double.Parse(text.AsSpan(0, text.IndexOf(' ', StringComparison.Ordinal)), CultureInfo.InvariantCulture);
            return (ulong)(seconds * 1000);
        }
        catch (IOException)
        {
            return 0;
        }
    }
}
