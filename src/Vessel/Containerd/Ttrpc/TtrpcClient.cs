using System.Collections.Concurrent;
using System.Net.Sockets;
using Google.Protobuf;
using Vessel.Containerd.Ttrpc.Wire;
using Vessel.Interop;

namespace Vessel.Containerd.Ttrpc;

/// <summary>
/// A ttrpc client on a unix socket: unary calls, each on its own odd stream id, answered in
/// any order. A call whose connection breaks fails with an <see cref="IOException"/>; a call the
/// server refused fails with its <see cref="TtrpcStatusException"/>.
/// </summary>
internal sealed class TtrpcClient : IAsyncDisposable
{
    private readonly NetworkStream _stream;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<Response>> _pending = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _readLoop;
    private uint _nextStream = 1;

    private TtrpcClient(NetworkStream stream)
    {
        _stream = stream;
        _readLoop = Task.Run(ReadLoopAsync);
    }

    /// <summary>Connects to <paramref name="address"/>: a socket path, or <c>unix://PATH</c>.</summary>
    public static async Task<TtrpcClient> ConnectAsync(string address, CancellationToken cancellationToken)
    {
        string path = address.StartsWith("unix://", StringComparison.Ordinal) ? address["unix://".Length..] : address;
        return new TtrpcClient(new NetworkStream(await UnixSocket.ConnectAsync(path, cancellationToken), ownsSocket: true));
    }

    public async Task<TResponse> CallAsync<TResponse>(string service, string method, IMessage request, MessageParser<TResponse> parser, CancellationToken cancellationToken)
        where TResponse : IMessage<TResponse>
    {
        var envelope = new Request { Service = service, Method = method, Payload = request.ToByteString() };
        var answer = new TaskCompletionSource<Response>(TaskCreationOptions.RunContinuationsAsynchronously);
        uint id;
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            id = _nextStream;
            _nextStream += 2;
            _pending[id] = answer;
            if (_readLoop.IsCompleted)
            {
                throw new IOException($"ttrpc: the connection is closed ({service}/{method}).");
            }
            await TtrpcFraming.WriteAsync(_stream, id, TtrpcMessageType.Request, 0, envelope.ToByteArray(), cancellationToken);
        }
        catch
        {
            _pending.TryRemove(_nextStream - 2, out _);
            throw;
        }
        finally
        {
            _writeLock.Release();
        }
        Response response;
        try
        {
            response = await answer.Task.WaitAsync(cancellationToken);
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
        if (response.Status is { Code: not 0 } status)
        {
            throw new TtrpcStatusException((Grpc.Core.StatusCode)status.Code, $"{service}/{method}: {status.Message}");
        }
        return parser.ParseFrom(response.Payload);
    }

    private async Task ReadLoopAsync()
    {
        Exception? failure = null;
        try
        {
            while (await TtrpcFraming.ReadAsync(_stream, _stop.Token) is { } frame)
            {
                if (frame.Header.Type == TtrpcMessageType.Response && _pending.TryRemove(frame.Header.StreamId, out var answer))
                {
                    answer.TrySetResult(Response.Parser.ParseFrom(frame.Data));
                }
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException or ObjectDisposedException or InvalidProtocolBufferException)
        {
            failure = e;
        }
        foreach (var pending in _pending.Values)
        {
            pending.TrySetException(new IOException("ttrpc: the connection closed before the response" + (failure is null ? "." : ": " + failure.Message), failure));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _stream.DisposeAsync();
        await _readLoop;
        _stop.Dispose();
        _writeLock.Dispose();
    }
}
