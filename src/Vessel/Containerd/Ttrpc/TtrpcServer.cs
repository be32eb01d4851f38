using System.Collections.Concurrent;
using System.Net.Sockets;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vessel.Containerd.Ttrpc.Wire;
using StatusCode = Grpc.Core.StatusCode;

namespace Vessel.Containerd.Ttrpc;

/// <summary>A unary ttrpc method: the request's payload in, the response message out (or a <see cref="TtrpcStatusException"/>).</summary>
internal delegate Task<IMessage> TtrpcMethod(ByteString payload, CancellationToken cancellationToken);

/// <summary>
/// A ttrpc server on a unix socket (containerd/ttrpc PROTOCOL.md): unary requests only, each
/// dispatched by its service and method name to a registered handler and answered on its
/// stream with a Response (status and payload). Requests of one connection run concurrently
/// (a Wait blocks until its process exits while other calls go on). An unknown method, or a
/// streaming request, is answered with UNIMPLEMENTED; a connection that breaks the framing
/// is closed. The server owns its socket file: it creates it and removes it on disposal.
/// </summary>
internal sealed partial class TtrpcServer : IAsyncDisposable
{
    private readonly Dictionary<string, TtrpcMethod> _methods = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<Socket, Task> _connections = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly ILogger _logger;
    private Socket? _listener;
    private Task _acceptLoop = Task.CompletedTask;

    public TtrpcServer(string socketPath, ILogger? logger = null)
    {
        SocketPath = socketPath;
        _logger = logger ?? NullLogger.Instance;
    }

    public string SocketPath { get; }

    /// <summary>Registers a method before <see cref="Start"/>: <c>service</c> is the full name (<c>containerd.task.v2.Task</c>).</summary>
    public void Register(string service, string method, TtrpcMethod handler) => _methods.Add(service + "/" + method, handler);

    /// <summary>Registers a method with a typed request.</summary>
    public void Register<TRequest>(string service, string method, MessageParser<TRequest> parser, Func<TRequest, CancellationToken, Task<IMessage>> handler)
        where TRequest : IMessage<TRequest>
        => Register(service, method, (payload, ct) => handler(parser.ParseFrom(payload), ct));

    /// <summary>Binds and listens (the socket file must not exist), then accepts connections in the background.</summary>
    public void Start()
    {
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
            listener.Listen(16);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        _listener = listener;
        _acceptLoop = AcceptLoopAsync(listener);
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            _connections[connection] = Task.Run(() => ServeAsync(connection));
        }
    }

    private async Task ServeAsync(Socket connection)
    {
        var writeLock = new SemaphoreSlim(1, 1);
        var calls = new List<Task>();
        await using var stream = new NetworkStream(connection, ownsSocket: true);
        try
        {
            while (await TtrpcFraming.ReadAsync(stream, _stop.Token) is { } frame)
            {
                if (frame.Header.Type != TtrpcMessageType.Request)
                {
                    // No streams are open (unary only): data on one is a peer's mistake, not fatal.
                    LogIgnoredFrame(_logger, frame.Header.Type, frame.Header.StreamId);
                    continue;
                }
                calls.RemoveAll(t => t.IsCompleted);
                calls.Add(Task.Run(() => HandleAsync(stream, writeLock, frame)));
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException or ObjectDisposedException)
        {
            if (e is TtrpcProtocolException)
            {
                LogProtocolError(_logger, e.Message);
            }
        }
        finally
        {
            try
            {
                connection.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
            }
            catch (ObjectDisposedException)
            {
            }
            await Task.WhenAll(calls).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            _connections.TryRemove(connection, out _);
        }
    }

    private async Task HandleAsync(Stream stream, SemaphoreSlim writeLock, TtrpcFrame frame)
    {
        var response = new Response();
        try
        {
            Request request = Request.Parser.ParseFrom(frame.Data);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            if (request.TimeoutNano > 0)
            {
                timeout.CancelAfter(TimeSpan.FromTicks(Math.Max(1, request.TimeoutNano / 100)));
            }
            if ((frame.Header.Flags & (TtrpcFrameHeader.FlagRemoteOpen | TtrpcFrameHeader.FlagRemoteClosed)) != 0)
            {
                throw new TtrpcStatusException(StatusCode.Unimplemented, $"{request.Service}/{request.Method}: streaming requests are not supported");
            }
            if (!_methods.TryGetValue(request.Service + "/" + request.Method, out TtrpcMethod? method))
            {
                throw new TtrpcStatusException(StatusCode.Unimplemented, $"{request.Service}/{request.Method} is not implemented");
            }
            IMessage result = await method(request.Payload, timeout.Token);
            response.Payload = result.ToByteString();
        }
        catch (TtrpcStatusException e)
        {
            response.Status = new Vessel.Containerd.Api.Rpc.Status { Code = (int)e.Code, Message = e.Message };
        }
        catch (InvalidProtocolBufferException e)
        {
            response.Status = new Vessel.Containerd.Api.Rpc.Status { Code = (int)StatusCode.InvalidArgument, Message = "ttrpc: undecodable request: " + e.Message };
        }
        catch (Exception e)
        {
            LogHandlerFailed(_logger, e);
            response.Status = new Vessel.Containerd.Api.Rpc.Status { Code = (int)StatusCode.Unknown, Message = e.Message };
        }
        await writeLock.WaitAsync(CancellationToken.None);
        try
        {
            await TtrpcFraming.WriteAsync(stream, frame.Header.StreamId, TtrpcMessageType.Response, 0, response.ToByteArray(), CancellationToken.None);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The client went away: nothing to answer.
        }
        finally
        {
            writeLock.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener?.Dispose();
        await _acceptLoop;
        foreach (Socket s in _connections.Keys)
        {
            try
            {
                s.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        }
        await Task.WhenAll(_connections.Values).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_listener is not null)
        {
            File.Delete(SocketPath);
        }
        _stop.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "ttrpc: ignored a {Type} frame on stream {StreamId} (unary requests only)")]
    private static partial void LogIgnoredFrame(ILogger logger, TtrpcMessageType type, uint streamId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "ttrpc: closed a connection: {Reason}")]
    private static partial void LogProtocolError(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "ttrpc: a handler failed")]
    private static partial void LogHandlerFailed(ILogger logger, Exception exception);
}
