using System.Runtime.CompilerServices;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Vessel.Containerd.Api.Content;
using Vessel.Containerd.Api.Images;
using Vessel.Containerd.Api.Leases;
using Vessel.Containerd.Api.Snapshots;
using Vessel.Containerd.Api.Types;
using Vessel.Containerd.Api.Version;

namespace Vessel.Containerd;

/// <summary>
/// The containerd calls Vessel uses (version, images, content, leases, snapshots), each in one
/// namespace. Errors are <see cref="VesselException"/>s whose reason follows the gRPC status.
/// </summary>
internal sealed class ContainerdClient : IDisposable
{
    /// <summary>containerd's default snapshotter on Linux.</summary>
    public const string DefaultSnapshotter = "overlayfs";

    private const string VersionService = "/containerd.services.version.v1.Version/";
    private const string ImagesService = "/containerd.services.images.v1.Images/";
    private const string ContentService = "/containerd.services.content.v1.Content/";
    private const string LeasesService = "/containerd.services.leases.v1.Leases/";
    private const string SnapshotsService = "/containerd.services.snapshots.v1.Snapshots/";

    private readonly GrpcChannel _channel;

    public ContainerdClient(string address, string @namespace)
    {
        if (string.IsNullOrWhiteSpace(@namespace))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "A containerd namespace is required (--namespace).");
        }
        Address = address;
        Namespace = @namespace;
        _channel = new GrpcChannel(address);
    }

    public string Address { get; }

    public string Namespace { get; }

    private GrpcMetadata Metadata => new(Namespace);

    public Task<VersionResponse> VersionAsync(CancellationToken cancellationToken)
        => _channel.UnaryAsync(VersionService + "Version", new Empty(), VersionResponse.Parser, default, cancellationToken);

    public async Task<Image> GetImageAsync(string name, CancellationToken cancellationToken)
    {
        GetImageResponse response = await _channel.UnaryAsync(ImagesService + "Get",
            new GetImageRequest { Name = name }, GetImageResponse.Parser, Metadata, cancellationToken);
        return response.Image ?? throw new VesselException(VesselErrorReason.Protocol, $"containerd Images/Get '{name}': empty response.");
    }

    public async Task<IReadOnlyList<Image>> ListImagesAsync(IEnumerable<string> filters, CancellationToken cancellationToken)
    {
        var request = new ListImagesRequest();
        request.Filters.AddRange(filters);
        ListImagesResponse response = await _channel.UnaryAsync(ImagesService + "List", request, ListImagesResponse.Parser, Metadata, cancellationToken);
        return response.Images;
    }

    public async Task<Api.Content.Info> ContentInfoAsync(string digest, CancellationToken cancellationToken)
    {
        InfoResponse response = await _channel.UnaryAsync(ContentService + "Info",
            new InfoRequest { Digest = digest }, InfoResponse.Parser, Metadata, cancellationToken);
        return response.Info ?? throw new VesselException(VesselErrorReason.Protocol, $"containerd Content/Info '{digest}': empty response.");
    }

    /// <summary>Streams a blob's bytes as containerd sends them (one or more chunks, in order).</summary>
    public async IAsyncEnumerable<ReadOnlyMemory<byte>> ReadContentAsync(string digest, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        long expected = 0;
        await foreach (ReadContentResponse chunk in _channel.ServerStreamingAsync(ContentService + "Read",
            new ReadContentRequest { Digest = digest }, ReadContentResponse.Parser, Metadata, cancellationToken))
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
        CreateResponse response = await _channel.UnaryAsync(LeasesService + "Create", request, CreateResponse.Parser, Metadata, cancellationToken);
        return response.Lease ?? throw new VesselException(VesselErrorReason.Protocol, $"containerd Leases/Create '{id}': empty response.");
    }

    public Task DeleteLeaseAsync(string id, bool sync, CancellationToken cancellationToken)
        => _channel.UnaryAsync(LeasesService + "Delete", new DeleteRequest { Id = id, Sync = sync }, Empty.Parser, Metadata, cancellationToken);

    public async Task<IReadOnlyList<Lease>> ListLeasesAsync(IEnumerable<string> filters, CancellationToken cancellationToken)
    {
        var request = new ListRequest();
        request.Filters.AddRange(filters);
        ListResponse response = await _channel.UnaryAsync(LeasesService + "List", request, ListResponse.Parser, Metadata, cancellationToken);
        return response.Leases;
    }

    public async Task<Api.Snapshots.Info> StatSnapshotAsync(string snapshotter, string key, CancellationToken cancellationToken)
    {
        StatSnapshotResponse response = await _channel.UnaryAsync(SnapshotsService + "Stat",
            new StatSnapshotRequest { Snapshotter = snapshotter, Key = key }, StatSnapshotResponse.Parser, Metadata, cancellationToken);
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
        ViewSnapshotResponse response = await _channel.UnaryAsync(SnapshotsService + "View", request, ViewSnapshotResponse.Parser,
            Metadata with { Lease = leaseId }, cancellationToken);
        return response.Mounts;
    }

    public async Task<IReadOnlyList<Mount>> SnapshotMountsAsync(string snapshotter, string key, CancellationToken cancellationToken)
    {
        MountsResponse response = await _channel.UnaryAsync(SnapshotsService + "Mounts",
            new MountsRequest { Snapshotter = snapshotter, Key = key }, MountsResponse.Parser, Metadata, cancellationToken);
        return response.Mounts;
    }

    public Task RemoveSnapshotAsync(string snapshotter, string key, CancellationToken cancellationToken)
        => _channel.UnaryAsync(SnapshotsService + "Remove",
            new RemoveSnapshotRequest { Snapshotter = snapshotter, Key = key }, Empty.Parser, Metadata, cancellationToken);

    public async Task<IReadOnlyList<Api.Snapshots.Info>> ListSnapshotsAsync(string snapshotter, IEnumerable<string> filters, CancellationToken cancellationToken)
    {
        var request = new ListSnapshotsRequest { Snapshotter = snapshotter };
        request.Filters.AddRange(filters);
        var all = new List<Api.Snapshots.Info>();
        await foreach (ListSnapshotsResponse page in _channel.ServerStreamingAsync(SnapshotsService + "List", request,
            ListSnapshotsResponse.Parser, Metadata, cancellationToken))
        {
            all.AddRange(page.Info);
        }
        return all;
    }

    public void Dispose() => _channel.Dispose();
}
