namespace Vessel.Oci;

/// <summary>
/// What the OCI layout, oci-archive and registry sources share: walking from a root
/// descriptor through an index (picking linux/amd64) to a manifest and its config, then
/// serving layers as verified, decompressed streams. A subclass says where blobs come from.
/// </summary>
internal abstract class OciImageSource : IImageSource
{
    public const string WantedOs = "linux";
    public const string WantedArchitecture = "amd64";
    private const int MaxIndexDepth = 2; // an index may point at an index once (a layout's index.json at an image index)

    private ResolvedImage? _resolved;
    private IReadOnlyList<OciDescriptor>? _layers;

    protected OciImageSource(string description, ImageSourceOptions options)
    {
        Description = description;
        Options = options;
    }

    public string Description { get; }

    protected ImageSourceOptions Options { get; }

    public async Task<ResolvedImage> ResolveAsync(CancellationToken cancellationToken)
    {
        (OciDescriptor root, byte[]? rootJson, string? rootType) = await SelectRootAsync(cancellationToken);
        OciDescriptor current = root;
        byte[] json = rootJson ?? await ReadManifestAsync(current, cancellationToken);
        string? contentType = rootJson is null ? current.MediaType : rootType;
        for (int depth = 0; ; depth++)
        {
            string what = $"manifest {current.Digest} of {Description}";
            object document = OciDocuments.ParseManifestOrIndex(json, contentType, what);
            if (document is OciManifest manifest)
            {
                return await ResolveManifestAsync(current, manifest, what, cancellationToken);
            }
            var index = (OciIndex)document;
            if (depth >= MaxIndexDepth)
            {
                throw new InvalidDataException($"{Description}: indexes nest deeper than {MaxIndexDepth} levels.");
            }
            current = PickPlatform(index, what);
            json = await ReadManifestAsync(current, cancellationToken);
            contentType = current.MediaType;
        }
    }

    public async Task<Stream> OpenLayerAsync(int index, CancellationToken cancellationToken)
    {
        OciDescriptor layer = ImageSourceGuard.Layer(Description, _resolved, _layers, index);
        string what = LayerName(index, _layers.Count, layer.Digest);
        Stream raw = await OpenBlobAsync(layer, what, cancellationToken);
        var blob = new DigestVerifyingStream(raw, layer.Digest, layer.Size, what);
        OciDigest? diffId = Options.VerifyDiffIds && _resolved.Config.DiffIds.Count == _layers.Count
            ? OciDigest.Parse(_resolved.Config.DiffIds[index], what)
            : null;
        return await LayerStream.OpenAsync(blob, diffId, what, cancellationToken);
    }

    public virtual ValueTask DisposeAsync() => ValueTask.CompletedTask;

    internal string LayerName(int index, int count, OciDigest digest) => $"layer {index + 1} of {count} ({digest}) of {Description}";

    /// <summary>
    /// The descriptor to start from; a source that already holds its bytes (a registry
    /// manifest fetched by tag) returns them with their content type.
    /// </summary>
    protected abstract Task<(OciDescriptor Root, byte[]? Json, string? ContentType)> SelectRootAsync(CancellationToken cancellationToken);

    /// <summary>Opens a blob's raw bytes; the caller verifies them.</summary>
    protected abstract Task<Stream> OpenBlobAsync(OciDescriptor descriptor, string what, CancellationToken cancellationToken);

    /// <summary>Reads a manifest or index by descriptor, verified against its digest and capped in size.</summary>
    protected virtual Task<byte[]> ReadManifestAsync(OciDescriptor descriptor, CancellationToken cancellationToken) =>
        ReadJsonBlobAsync(descriptor, $"manifest {descriptor.Digest} of {Description}", cancellationToken);

    protected async Task<byte[]> ReadJsonBlobAsync(OciDescriptor descriptor, string what, CancellationToken cancellationToken)
    {
        OciDocuments.CheckDocumentSize(descriptor, what);
        Stream raw = await OpenBlobAsync(descriptor, what, cancellationToken);
        await using var blob = new DigestVerifyingStream(raw, descriptor.Digest, descriptor.Size, what);
        return await OciDocuments.ReadLimitedAsync(blob, OciDocuments.MaxDocumentSize, what, cancellationToken);
    }

    private async Task<ResolvedImage> ResolveManifestAsync(OciDescriptor manifestDescriptor, OciManifest manifest, string what, CancellationToken cancellationToken)
    {
        string configWhat = $"config {manifest.Config.Digest} of {Description}";
        byte[] configJson = await ReadJsonBlobAsync(manifest.Config, configWhat, cancellationToken);
        ImageConfig config = ImageConfig.Parse(configJson, configWhat);
        CheckPlatform(config);
        for (int i = 0; i < manifest.Layers.Count; i++)
        {
            OciDescriptor layer = manifest.Layers[i];
            if (!OciMediaTypes.IsKnownLayer(layer.MediaType))
            {
                throw new VesselException(VesselErrorReason.Unsupported,
                    $"{what}: layer {i + 1} has media type '{OciDigest.Printable(layer.MediaType)}', which is not a tar layer Vessel can unpack.");
            }
            if (layer.Urls.Count > 0)
            {
                throw new VesselException(VesselErrorReason.Unsupported,
                    $"{what}: layer {i + 1} is a foreign layer served from {OciDigest.Printable(layer.Urls[0])}; Vessel does not fetch foreign layers.");
            }
        }
        if (config.DiffIds.Count != 0 && config.DiffIds.Count != manifest.Layers.Count)
        {
            throw new InvalidDataException(
                $"{configWhat} lists {config.DiffIds.Count} diff_ids but the manifest has {manifest.Layers.Count} layers.");
        }
        _layers = manifest.Layers;
        _resolved = new ResolvedImage(
            manifestDescriptor.Digest.ToString(),
            manifestDescriptor.Digest.ToString(),
            config,
            [.. manifest.Layers.Select(l => new LayerDescriptor(l.Digest.ToString(), l.MediaType, l.Size))]);
        return _resolved;
    }

    internal void CheckPlatform(ImageConfig config)
    {
        // Configs written by hand sometimes leave these out; only a stated other platform is refused.
        if ((config.Os.Length > 0 && config.Os != WantedOs) || (config.Architecture.Length > 0 && config.Architecture != WantedArchitecture))
        {
            throw new VesselException(VesselErrorReason.Unsupported,
                $"{Description} is built for {config.Os}/{config.Architecture}; Vessel runs {WantedOs}/{WantedArchitecture} images. Pick the amd64 variant of the image.");
        }
    }

    private OciDescriptor PickPlatform(OciIndex index, string what)
    {
        var manifests = index.Manifests.Where(m => OciMediaTypes.IsManifest(m.MediaType) || OciMediaTypes.IsIndex(m.MediaType)).ToList();
        OciDescriptor? match = manifests.FirstOrDefault(m => m.Platform is { Os: WantedOs, Architecture: WantedArchitecture });
        if (match is not null)
        {
            return match;
        }
        if (manifests.Count == 1 && manifests[0].Platform is null)
        {
            return manifests[0]; // an index without platforms (an OCI layout's index.json): the config says which platform
        }
        string present = string.Join(", ", index.Manifests
            .Select(m => m.Platform?.ToString() ?? "(no platform)")
            .Distinct(StringComparer.Ordinal));
        throw new VesselException(VesselErrorReason.Unsupported,
            $"{what} has no {WantedOs}/{WantedArchitecture} image; platforms present: {(present.Length == 0 ? "none" : present)}.");
    }
}
