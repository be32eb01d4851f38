using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using Vessel.Common;
using Vessel.Containerd.Api.TtrpcEvents;
using Vessel.Containerd.Ttrpc;

namespace Vessel.Shim;

/// <summary>
/// Publishes task events to containerd, in the order they are given: over ttrpc
/// (<c>containerd.services.events.ttrpc.v1.Events/Forward</c> to TTRPC_ADDRESS, as containerd's
/// own shims do when it is set), else through the publish binary (<c>BIN --address ADDR publish
/// --topic T --namespace NS</c> with the event, an Any, on stdin). The Any's type URL is the
/// message's full name, as containerd's typeurl writes it. A failure is logged, never thrown:
/// a lost event must not fail the task.
/// </summary>
internal sealed partial class ShimEvents : IAsyncDisposable
{
    private readonly ShimArguments _arguments;
    private readonly string? _ttrpcAddress;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _order = new(1, 1);
    private TtrpcClient? _client;

    public ShimEvents(ShimArguments arguments, string? ttrpcAddress, ILogger logger)
    {
        _arguments = arguments;
        _ttrpcAddress = ttrpcAddress is { Length: > 0 } ? ttrpcAddress : null;
        _logger = logger;
    }

    public async Task PublishAsync(string topic, IMessage message)
    {
        var any = new Any { TypeUrl = message.Descriptor.FullName, Value = message.ToByteString() };
        await _order.WaitAsync();
        try
        {
            if (_ttrpcAddress is not null)
            {
                await ForwardAsync(topic, any);
            }
            else
            {
                await PublishBinaryAsync(topic, any);
            }
        }
        catch (Exception e) when (e is IOException or TtrpcStatusException or System.Net.Sockets.SocketException or OperationCanceledException or TimeoutException or VesselException)
        {
            LogPublishFailed(_logger, topic, e.Message);
        }
        finally
        {
            _order.Release();
        }
    }

    private async Task ForwardAsync(string topic, Any any)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        _client ??= await TtrpcClient.ConnectAsync(_ttrpcAddress!, timeout.Token);
        var request = new ForwardRequest
        {
            Envelope = new Envelope { Timestamp = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow), Namespace = _arguments.Namespace, Topic = topic, Event = any },
        };
        try
        {
            await _client.CallAsync("containerd.services.events.ttrpc.v1.Events", "Forward", request, Empty.Parser, timeout.Token);
        }
        catch (IOException)
        {
            // The connection broke (containerd restarted): one more try on a new one.
            await _client.DisposeAsync();
            _client = await TtrpcClient.ConnectAsync(_ttrpcAddress!, timeout.Token);
            await _client.CallAsync("containerd.services.events.ttrpc.v1.Events", "Forward", request, Empty.Parser, timeout.Token);
        }
    }

    private async Task PublishBinaryAsync(string topic, Any any)
    {
        if (_arguments.PublishBinary.Length == 0)
        {
            return;
        }
        ProcessResult r = await ExternalProcess.RunAsync(_arguments.PublishBinary, ["--address", _arguments.Address, "publish", "--topic", topic, "--namespace", _arguments.Namespace],
            any.ToByteArray(), TimeSpan.FromSeconds(10), CancellationToken.None);
        if (!r.Succeeded)
        {
            throw new IOException($"{_arguments.PublishBinary} publish exited with {r.ExitCode}: {r.StandardError.Trim()}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_client is not null)
        {
            await _client.DisposeAsync();
        }
        _order.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "publishing event {Topic} failed: {Reason}")]
    private static partial void LogPublishFailed(ILogger logger, string topic, string reason);
}
