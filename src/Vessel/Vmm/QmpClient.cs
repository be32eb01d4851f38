using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Vessel.Interop;

namespace Vessel.Vmm;

/// <summary>An asynchronous QMP event (qemu docs/interop/qmp-spec.rst, "Asynchronous events").</summary>
public sealed record QmpEvent(string Name, JsonObject? Data, DateTimeOffset Timestamp);

/// <summary>
/// A QEMU Machine Protocol client on a unix socket: greeting, capabilities negotiation,
/// commands matched to replies by id, and events (qemu docs/interop/qmp-spec.rst).
/// </summary>
public sealed class QmpClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<long, TaskCompletionSource<JsonNode?>> _pending = new();
    private readonly Channel<QmpEvent> _events = Channel.CreateUnbounded<QmpEvent>();
    private readonly CancellationTokenSource _closed = new();
    private Task _readLoop = Task.CompletedTask;
    private long _nextId;

    private QmpClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    /// <summary>QEMU's version from the greeting, e.g. "7.2.0".</summary>
    public string Version { get; private set; } = string.Empty;

    public ChannelReader<QmpEvent> Events => _events.Reader;

    /// <summary>Connects (retrying while QEMU creates the socket), reads the greeting and negotiates capabilities.</summary>
    public static async Task<QmpClient> ConnectAsync(string socketPath, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        Socket socket;
        try
        {
            socket = await UnixSocket.ConnectWhenListeningAsync(socketPath, TimeSpan.FromMilliseconds(10), deadline.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"QMP socket {socketPath} did not accept a connection within {timeout.TotalSeconds:0.#} s.");
        }
        var client = new QmpClient(socket);
        try
        {
            var greetingSource = new TaskCompletionSource<JsonNode?>(TaskCreationOptions.RunContinuationsAsynchronously);
            client._pending[-1] = greetingSource;
            client._readLoop = Task.Run(client.ReadLoopAsync, CancellationToken.None);
            JsonNode? greeting = await greetingSource.Task.WaitAsync(deadline.Token);
            client.Version = greeting?["QMP"]?["version"]?["qemu"] is JsonObject v
                ? $"{v["major"]}.{v["minor"]}.{v["micro"]}"
                : string.Empty;
            await client.ExecuteAsync("qmp_capabilities", null, deadline.Token);
            return client;
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs a command and returns its "return" value; a QMP error becomes a <see cref="VesselException"/>.</summary>
    public async Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments, CancellationToken cancellationToken)
    {
        long id = Interlocked.Increment(ref _nextId);
        var request = new JsonObject { ["execute"] = command, ["id"] = id };
        if (arguments is not null)
        {
            request["arguments"] = arguments;
        }
        var tcs = new TaskCompletionSource<JsonNode?>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = tcs;
        try
        {
            byte[] line = Encoding.UTF8.GetBytes(request.ToJsonString() + "\n");
            await _writeLock.WaitAsync(cancellationToken);
            try
            {
                await _stream.WriteAsync(line, cancellationToken);
            }
            finally
            {
                _writeLock.Release();
            }
            return await tcs.Task.WaitAsync(cancellationToken);
        }
        catch (IOException e)
        {
            throw new VesselException(VesselErrorReason.Unavailable, $"QMP {command}: the connection to QEMU broke ({e.Message}).", e);
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    /// <summary>Waits for the next event named <paramref name="name"/>.</summary>
    public async Task<QmpEvent> WaitForEventAsync(string name, CancellationToken cancellationToken)
    {
        while (await _events.Reader.WaitToReadAsync(cancellationToken))
        {
            while (_events.Reader.TryRead(out QmpEvent? e))
            {
                if (e.Name == name)
                {
                    return e;
                }
            }
        }
        throw new VesselException(VesselErrorReason.Unavailable, $"QMP closed before event {name}.");
    }

    private async Task ReadLoopAsync()
    {
        Exception? failure = null;
        try
        {
            using var reader = new StreamReader(_stream, Encoding.UTF8, false, 4096, leaveOpen: true);
            while (await reader.ReadLineAsync(_closed.Token) is { } line)
            {
                if (line.Length == 0)
                {
                    continue;
                }
                JsonNode? message = JsonNode.Parse(line);
                if (message is not JsonObject obj)
                {
                    continue;
                }
                if (obj.ContainsKey("QMP"))
                {
                    Complete(-1, obj, null);
                }
                else if (obj["event"] is JsonValue ev)
                {
                    long seconds = obj["timestamp"]?["seconds"]?.GetValue<long>() ?? 0;
                    long micros = obj["timestamp"]?["microseconds"]?.GetValue<long>() ?? 0;
                    _events.Writer.TryWrite(new QmpEvent(ev.GetValue<string>(), obj["data"] as JsonObject, DateTimeOffset.FromUnixTimeMilliseconds((seconds * 1000) + (micros / 1000))));
                }
                else if (obj["id"] is JsonValue idValue && idValue.TryGetValue(out long id))
                {
                    if (obj["error"] is JsonObject error)
                    {
                        Complete(id, null, new VesselException(VesselErrorReason.ToolFailed, $"QMP error {error["class"]}: {error["desc"]}"));
                    }
                    else
                    {
                        Complete(id, obj["return"], null);
                    }
                }
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or JsonException or ObjectDisposedException)
        {
            failure = e;
        }
        _events.Writer.TryComplete();
        foreach (var (_, tcs) in _pending)
        {
            tcs.TrySetException(new IOException("QMP connection closed", failure));
        }
    }

    private void Complete(long id, JsonNode? value, Exception? error)
    {
        if (_pending.TryGetValue(id, out TaskCompletionSource<JsonNode?>? tcs))
        {
            if (error is not null)
            {
                tcs.TrySetException(error);
            }
            else
            {
                tcs.TrySetResult(value?.DeepClone());
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _closed.CancelAsync();
        _socket.Dispose();
        await _stream.DisposeAsync();
        try
        {
            await _readLoop;
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
        }
        _closed.Dispose();
        _writeLock.Dispose();
    }
}
