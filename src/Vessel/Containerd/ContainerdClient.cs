using System.Runtime.CompilerServices;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using Vessel.Containerd.Api.Containers;
using Vessel.Containerd.Api.Content;
using Vessel.Containerd.Api.Images;
using Vessel.Containerd.Api.Leases;
using Vessel.Containerd.Api.Snapshots;
using Vessel.Containerd.Api.Types;
using Vessel.Containerd.Api.Version;
using Vessel.Interop;
using Vessel.Oci;

namespace Vessel.Containerd;

/// <summary>
/// The containerd calls Vessel uses (version, images, containers, content, leases, snapshots), each in one
/// namespace, over Grpc.Net.Client on containerd's unix socket (HTTP/2 with prior knowledge).
/// Errors are <see cref="VesselException"/>s whose reason follows the gRPC status; cancelling a
/// call's token throws <see cref="OperationCanceledException"/>.
/// </summary>
internal sealed class ContainerdClient : IDisposable
{
    /// <summary>containerd's default snapshotter on Linux.</summary>
    public const string DefaultSnapshotter = "overlayfs";

    /// <summary>The largest message accepted; containerd's own default receive limit is 16 MiB.</summary>
    public const int MaxMessageSize = 16 << 20;

    private const string NamespaceHeader = "containerd-namespace";
    private const string LeaseHeader = "containerd-lease";

    private readonly GrpcChannel _channel;
    private readonly Api.Version.Version.VersionClient _version;
    private readonly Images.ImagesClient _images;
    private readonly Containers.ContainersClient _containers;
    private readonly Content.ContentClient _content;
    private readonly Leases.LeasesClient _leases;
    private readonly Snapshots.SnapshotsClient _snapshots;

    public ContainerdClient(string address, string @namespace)
    {
        if (string.IsNullOrWhiteSpace(@namespace))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "A containerd namespace is required (--namespace).");
        }
        Address = address;
        Namespace = @namespace;
        _channel = CreateChannel(address);
        _version = new Api.Version.Version.VersionClient(_channel);
        _images = new Images.ImagesClient(_channel);
        _containers = new Containers.ContainersClient(_channel);
        _content = new Content.ContentClient(_channel);
        _leases = new Leases.LeasesClient(_channel);
        _snapshots = new Snapshots.SnapshotsClient(_channel);
    }

    public string Address { get; }

    public string Namespace { get; }

    public Task<VersionResponse> VersionAsync(CancellationToken cancellationToken)
        => UnaryAsync("Version/Version", o => _version.VersionAsync(new Empty(), o), lease: null, cancellationToken);

    public async Task<Image> GetImageAsync(string name, CancellationToken cancellationToken)
    {
        GetImageResponse response = await UnaryAsync("Images/Get",
            o => _images.GetAsync(new GetImageRequest { Name = name }, o), lease: null, cancellationToken);
        return response.Image ?? throw new VesselException(VesselErrorReason.Protocol, $"containerd Images/Get '{name}': empty response.");
    }

    /// <summary>The container record (its image and snapshotter): what a shim's Create is not told.</summary>
    public async Task<Container> GetContainerAsync(string id, CancellationToken cancellationToken)
    {
        GetContainerResponse response = await UnaryAsync("Containers/Get",
            o => _containers.GetAsync(new GetContainerRequest { Id = id }, o), lease: null, cancellationToken);
        return response.Container ?? throw new VesselException(VesselErrorReason.Protocol, $"containerd Containers/Get '{id}': empty response.");
    }

    public async Task<IReadOnlyList<Image>> ListImagesAsync(IEnumerable<string> filters, CancellationToken cancellationToken)
    {
        var request = new ListImagesRequest();
        request.Filters.AddRange(filters);
        ListImagesResponse response = await UnaryAsync("Images/List", o => _images.ListAsync(request, o), lease: null, cancellationToken);
        return response.Images;
    }

    public async Task<Api.Content.Info> ContentInfoAsync(string digest, CancellationToken cancellationToken)
    {
        InfoResponse response = await UnaryAsync("Content/Info",
            o => _content.InfoAsync(new InfoRequest { Digest = digest }, o), lease: null, cancellationToken);
        return response.Info ?? throw new VesselException(VesselErrorReason.Protocol, $"containerd Content/Info '{digest}': empty response.");
    }

    /// <summary>Streams a blob's bytes as containerd sends them (one or more chunks, in order).</summary>
    public async IAsyncEnumerable<ReadOnlyMemory<byte>> ReadContentAsync(OciDigest digest, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        long expected = 0;
        await foreach (ReadContentResponse chunk in ServerStreamingAsync("Content/Read",
            o => _content.Read(new ReadContentRequest { Digest = digest.ToString() }, o), cancellationToken))
        {
            if (chunk.Offset != expected)
            {
                throw new VesselException(VesselErrorReason.Protocol,
                    $"containerd Content/Read {digest}: chunk at offset {chunk.Offset}, expected {expected}.");
            }
            expected += chunk.Data.Length;
            yield return chunk.Data.Memory;
        }
    }

    public async Task<Lease> CreateLeaseAsync(string id, IReadOnlyDictionary<string, string> labels, CancellationToken cancellationToken)
    {
        var request = new CreateRequest { Id = id };
        foreach (var (k, v) in labels)
        {
            request.Labels[k] = v;
        }
        CreateResponse response = await UnaryAsync("Leases/Create", o => _leases.CreateAsync(request, o), lease: null, cancellationToken);
        return response.Lease ?? throw new VesselException(VesselErrorReason.Protocol, $"containerd Leases/Create '{id}': empty response.");
    }

    public Task DeleteLeaseAsync(string id, bool sync, CancellationToken cancellationToken)
        => UnaryAsync("Leases/Delete", o => _leases.DeleteAsync(new DeleteRequest { Id = id, Sync = sync }, o), lease: null, cancellationToken);

    public async Task<IReadOnlyList<Lease>> ListLeasesAsync(IEnumerable<string> filters, CancellationToken cancellationToken)
    {
        var request = new ListRequest();
        request.Filters.AddRange(filters);
        ListResponse response = await UnaryAsync("Leases/List", o => _leases.ListAsync(request, o), lease: null, cancellationToken);
        return response.Leases;
    }

    public async Task<Api.Snapshots.Info> StatSnapshotAsync(string snapshotter, string key, CancellationToken cancellationToken)
    {
        StatSnapshotResponse response = await UnaryAsync("Snapshots/Stat",
            o => _snapshots.StatAsync(new StatSnapshotRequest { Snapshotter = snapshotter, Key = key }, o), lease: null, cancellationToken);
        return response.Info ?? throw new VesselException(VesselErrorReason.Protocol, $"containerd Snapshots/Stat '{key}': empty response.");
    }

    /// <summary>Creates a read-only view <paramref name="key"/> of <paramref name="parent"/>, owned by <paramref name="leaseId"/>.</summary>
    public async Task<IReadOnlyList<Mount>> ViewSnapshotAsync(
        string snapshotter, string key, string parent, IReadOnlyDictionary<string, string> labels, string? leaseId, CancellationToken cancellationToken)
    {
        var request = new ViewSnapshotRequest { Snapshotter = snapshotter, Key = key, Parent = parent };
        foreach (var (k, v) in labels)
        {
            request.Labels[k] = v;
        }
        ViewSnapshotResponse response = await UnaryAsync("Snapshots/View", o => _snapshots.ViewAsync(request, o), leaseId, cancellationToken);
        return response.Mounts;
    }

    public async Task<IReadOnlyList<Mount>> SnapshotMountsAsync(string snapshotter, string key, CancellationToken cancellationToken)
    {
        MountsResponse response = await UnaryAsync("Snapshots/Mounts",
            o => _snapshots.MountsAsync(new MountsRequest { Snapshotter = snapshotter, Key = key }, o), lease: null, cancellationToken);
        return response.Mounts;
    }

    public Task RemoveSnapshotAsync(string snapshotter, string key, CancellationToken cancellationToken)
        => UnaryAsync("Snapshots/Remove",
            o => _snapshots.RemoveAsync(new RemoveSnapshotRequest { Snapshotter = snapshotter, Key = key }, o), lease: null, cancellationToken);

    public async Task<IReadOnlyList<Api.Snapshots.Info>> ListSnapshotsAsync(string snapshotter, IEnumerable<string> filters, CancellationToken cancellationToken)
    {
        var request = new ListSnapshotsRequest { Snapshotter = snapshotter };
        request.Filters.AddRange(filters);
        var all = new List<Api.Snapshots.Info>();
        await foreach (ListSnapshotsResponse page in ServerStreamingAsync("Snapshots/List", o => _snapshots.List(request, o), cancellationToken))
        {
            all.AddRange(page.Info);
        }
        return all;
    }

    public void Dispose() => _channel.Dispose();

    private static GrpcChannel CreateChannel(string socketPath)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = (_, cancellationToken) => UnixSocket.ConnectStreamAsync(socketPath, cancellationToken),
            // One HTTP/2 connection multiplexes every call; keep it open between calls.
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
        };
        // The authority is not used on a unix socket, but HTTP/2 needs one.
        return GrpcChannel.ForAddress("http://containerd", new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = MaxMessageSize,
            ThrowOperationCanceledOnCancellation = true,
        });
    }

    private CallOptions Options(string? lease, CancellationToken cancellationToken)
    {
        var headers = new Metadata { { NamespaceHeader, Namespace } };
        if (lease is { Length: > 0 })
        {
            headers.Add(LeaseHeader, lease);
        }
        return new CallOptions(headers, cancellationToken: cancellationToken);
    }

    private async Task<T> UnaryAsync<T>(string method, Func<CallOptions, AsyncUnaryCall<T>> start, string? lease, CancellationToken cancellationToken)
    {
        try
        {
            using AsyncUnaryCall<T> call = start(Options(lease, cancellationToken));
            return await call.ResponseAsync;
        }
        catch (RpcException e)
        {
            throw ToException(method, e);
        }
    }

    private async IAsyncEnumerable<T> ServerStreamingAsync<T>(
        string method, Func<CallOptions, AsyncServerStreamingCall<T>> start, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // Disposing the call ends the HTTP/2 stream (RST_STREAM) when the consumer stops early.
        using AsyncServerStreamingCall<T> call = start(Options(lease: null, cancellationToken));
        while (true)
        {
            bool more;
            try
            {
                more = await call.ResponseStream.MoveNext(cancellationToken);
            }
            catch (RpcException e)
            {
                throw ToException(method, e);
            }
            if (!more)
            {
                yield break;
            }
            yield return call.ResponseStream.Current;
        }
    }

    private VesselException ToException(string method, RpcException e)
    {
        // The client's own status for a connection that never opened: say where we looked.
        if (e.StatusCode == StatusCode.Unavailable && e.Status.DebugException is { } cause)
        {
            return new VesselException(VesselErrorReason.Unavailable,
                $"Cannot reach containerd at {Address} ({method}): {cause.Message}. Is containerd running? Pass its socket with --address.", e);
        }
        return GrpcStatus.ToException(e.StatusCode, method, e.Status.Detail, e);
    }
}
