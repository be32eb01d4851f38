using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Google.Protobuf;

namespace Vessel.Containerd;

/// <summary>
/// A minimal gRPC client over HTTP/2 with prior knowledge on a unix socket (gRPC over HTTP/2,
/// "PROTOCOL-HTTP2.md"): POST /package.Service/Method, <c>content-type: application/grpc</c>,
/// <c>te: trailers</c>, length-prefixed messages, status in the trailers (or in the headers of
/// a trailers-only response). No gRPC client package is available here, so this is the whole
/// transport; messages come from <c>Grpc.Tools</c>.
/// </summary>
internal sealed class GrpcChannel : IDisposable
{
    /// <summary>The largest message accepted; containerd's own default receive limit is 16 MiB.</summary>
    public const int MaxMessageSize = 16 << 20;

    private readonly HttpClient _http;

    public GrpcChannel(string socketPath)
    {
        SocketPath = socketPath;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
            // One HTTP/2 connection multiplexes every call; keep it open between calls.
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
        };
        _http = new HttpClient(handler)
        {
            // The authority is not used on a unix socket, but HTTP/2 needs one.
            BaseAddress = new Uri("http://containerd"),
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    public string SocketPath { get; }

    /// <summary>Calls a unary method and returns its one response message.</summary>
    public async Task<TResponse> UnaryAsync<TResponse>(
        string method, IMessage request, MessageParser<TResponse> parser, GrpcMetadata metadata, CancellationToken cancellationToken)
        where TResponse : IMessage<TResponse>
    {
        TResponse? result = default;
        int count = 0;
        await foreach (TResponse message in ServerStreamingAsync(method, request, parser, metadata, cancellationToken))
        {
            result = message;
            count++;
        }
        if (count != 1 || result is null)
        {
            throw new VesselException(VesselErrorReason.Protocol,
                $"containerd {method}: expected one response message, got {count}.");
        }
        return result;
    }

    /// <summary>Calls a server-streaming method and yields each response message as it arrives.</summary>
    public async IAsyncEnumerable<TResponse> ServerStreamingAsync<TResponse>(
        string method, IMessage request, MessageParser<TResponse> parser, GrpcMetadata metadata,
        [EnumeratorCancellation] CancellationToken cancellationToken)
        where TResponse : IMessage<TResponse>
    {
        using HttpRequestMessage httpRequest = CreateRequest(method, request, metadata);
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(httpRequest, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        }
        catch (HttpRequestException e)
        {
            throw new VesselException(VesselErrorReason.Unavailable,
                $"Cannot reach containerd at {SocketPath} ({method}): {e.Message}. Is containerd running? Pass its socket with --address.", e);
        }

        using (response)
        {
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw new VesselException(VesselErrorReason.Protocol,
                    $"containerd {method}: HTTP status {(int)response.StatusCode}, expected 200.");
            }
            // A trailers-only response (an immediate error) carries the status in the headers.
            ThrowOnStatus(method, response.Headers);

            await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken);
            byte[] prefix = new byte[5];
            while (true)
            {
                int got = await ReadFullyAsync(body, prefix, cancellationToken);
                if (got == 0)
                {
                    break;
                }
                if (got < prefix.Length)
                {
                    throw new VesselException(VesselErrorReason.Protocol, $"containerd {method}: truncated message prefix.");
                }
                if (prefix[0] != 0)
                {
                    throw new VesselException(VesselErrorReason.Protocol,
                        $"containerd {method}: compressed message received, but no grpc-encoding was offered.");
                }
                uint length = BinaryPrimitives.ReadUInt32BigEndian(prefix.AsSpan(1));
                if (length > MaxMessageSize)
                {
                    throw new VesselException(VesselErrorReason.Protocol,
                        $"containerd {method}: message of {length} bytes exceeds the {MaxMessageSize}-byte limit.");
                }
                byte[] buffer = ArrayPool<byte>.Shared.Rent((int)length);
                TResponse message;
                try
                {
                    if (await ReadFullyAsync(body, buffer.AsMemory(0, (int)length), cancellationToken) != length)
                    {
                        throw new VesselException(VesselErrorReason.Protocol, $"containerd {method}: truncated message.");
                    }
                    message = parser.ParseFrom(buffer, 0, (int)length);
                }
                catch (InvalidProtocolBufferException e)
                {
                    throw new VesselException(VesselErrorReason.Protocol, $"containerd {method}: bad response message: {e.Message}", e);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
                yield return message;
            }

            if (!response.TrailingHeaders.TryGetValues("grpc-status", out _))
            {
                throw new VesselException(VesselErrorReason.Protocol, $"containerd {method}: the response ended without a grpc-status trailer.");
            }
            ThrowOnStatus(method, response.TrailingHeaders);
        }
    }

    public void Dispose() => _http.Dispose();

    private static HttpRequestMessage CreateRequest(string method, IMessage request, GrpcMetadata metadata)
    {
        int size = request.CalculateSize();
        byte[] frame = new byte[5 + size];
        frame[0] = 0; // not compressed
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)size);
        request.WriteTo(frame.AsSpan(5));

        var content = new ByteArrayContent(frame);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        var httpRequest = new HttpRequestMessage(HttpMethod.Post, method.StartsWith('/') ? method : "/" + method)
        {
            Content = content,
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        httpRequest.Headers.TryAddWithoutValidation("te", "trailers");
        if (metadata.Namespace is { Length: > 0 } ns)
        {
            httpRequest.Headers.TryAddWithoutValidation(GrpcMetadata.NamespaceHeader, ns);
        }
        if (metadata.Lease is { Length: > 0 } lease)
        {
            httpRequest.Headers.TryAddWithoutValidation(GrpcMetadata.LeaseHeader, lease);
        }
        return httpRequest;
    }

    private static void ThrowOnStatus(string method, HttpHeaders headers)
    {
        if (!headers.TryGetValues("grpc-status", out IEnumerable<string>? values))
        {
            return;
        }
        string text = values.FirstOrDefault() ?? string.Empty;
        if (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int code))
        {
            throw new VesselException(VesselErrorReason.Protocol, $"containerd {method}: bad grpc-status '{text}'.");
        }
        if (code == 0)
        {
            return;
        }
        string message = headers.TryGetValues("grpc-message", out IEnumerable<string>? m)
            ? Uri.UnescapeDataString(m.FirstOrDefault() ?? string.Empty)
            : string.Empty;
        throw GrpcStatus.ToException((GrpcStatusCode)code, method, message);
    }

    private static async Task<int> ReadFullyAsync(Stream stream, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = await stream.ReadAsync(buffer[total..], cancellationToken);
            if (n == 0)
            {
                break;
            }
            total += n;
        }
        return total;
    }
}

/// <summary>The containerd headers a call carries.</summary>
/// <param name="Namespace">Sent as <c>containerd-namespace</c>; every namespaced service needs it.</param>
/// <param name="Lease">Sent as <c>containerd-lease</c>: resources the call creates belong to that lease.</param>
internal readonly record struct GrpcMetadata(string? Namespace, string? Lease = null)
{
    public const string NamespaceHeader = "containerd-namespace";
    public const string LeaseHeader = "containerd-lease";
}
