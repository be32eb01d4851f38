using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using Vessel.Blocks;

namespace Vessel.Oci;

/// <summary>
/// A docker-archive: what <c>docker save</c> and <c>skopeo copy ... docker-archive:</c> write.
/// <c>manifest.json</c> lists images, each with a config file and layer files inside the
/// archive (moby image/spec "Combined Image JSON + Filesystem Changeset Format"). The layer
/// files carry no digest of their own, so each layer is checked, uncompressed, against the
/// config's diff_id, and the config against its file name when that is its digest.
/// </summary>
internal sealed class DockerArchiveImageSource : IImageSource
{
    private readonly TarArchiveIndex _archive;
    private readonly string? _name;
    private readonly int? _position;
    private ResolvedImage? _resolved;
    private IReadOnlyList<TarMember>? _layers;

    /// <param name="name">A RepoTags entry to pick ("busybox:latest"), or null.</param>
    /// <param name="position">skopeo's "@N": the N-th image of manifest.json, or null.</param>
    public DockerArchiveImageSource(TarArchiveIndex archive, string? name, int? position, string description)
    {
        _archive = archive;
        _name = name;
        _position = position;
        Description = description;
    }

    public string Description { get; }

    public async Task<ResolvedImage> ResolveAsync(CancellationToken cancellationToken)
    {
        string what = $"manifest.json of {Description}";
        byte[] json = await ReadMemberAsync("manifest.json", what, cancellationToken);
        using JsonDocument doc = OciDocuments.ParseJson(json, what);
        if (doc.RootElement.ValueKind != JsonValueKind.Array)
        {
            throw new InvalidDataException($"{what} is not a list of images.");
        }
        JsonElement entry = Select(doc.RootElement, what);
        string configName = OciDocuments.OptionalString(entry, "Config", what)
            ?? throw new InvalidDataException($"{what} has an image without a Config.");
        IReadOnlyList<string> layerNames = OciDocuments.OptionalStringList(entry, "Layers", what)
            ?? throw new InvalidDataException($"{what} has an image without Layers.");
        if (layerNames.Count > OciDocuments.MaxLayers)
        {
            throw new InvalidDataException($"{what} lists {layerNames.Count} layers; Vessel reads at most {OciDocuments.MaxLayers}.");
        }

        string configWhat = $"config '{OciDigest.Printable(configName)}' of {Description}";
        byte[] configJson = await ReadMemberAsync(TarArchiveIndex.Normalize(configName, what), configWhat, cancellationToken);
        OciDigest configDigest = OciDigest.Compute(configJson);
        OciDigest? named = DigestFromName(configName);
        if (named is not null && named != configDigest)
        {
            throw BlobErrors.Mismatch($"{configWhat} does not match its digest: expected {named}, got {configDigest}. The archive is corrupt or was tampered with.");
        }
        ImageConfig config = ImageConfig.Parse(configJson, configWhat);
        if ((config.Os.Length > 0 && config.Os != OciImageSource.WantedOs) || (config.Architecture.Length > 0 && config.Architecture != OciImageSource.WantedArchitecture))
        {
            throw new VesselException(VesselErrorReason.Unsupported,
                $"{Description} is built for {config.Os}/{config.Architecture}; Vessel runs {OciImageSource.WantedOs}/{OciImageSource.WantedArchitecture} images.");
        }
        if (config.DiffIds.Count != layerNames.Count)
        {
            throw new InvalidDataException($"{configWhat} lists {config.DiffIds.Count} diff_ids but manifest.json has {layerNames.Count} layers; the diff_ids are what Vessel checks layers against.");
        }

        var members = new List<TarMember>(layerNames.Count);
        var layers = new List<LayerDescriptor>(layerNames.Count);
        for (int i = 0; i < layerNames.Count; i++)
        {
            string layerWhat = $"layer {i + 1} of {layerNames.Count} ('{OciDigest.Printable(layerNames[i])}') of {Description}";
            TarMember member = _archive.Find(TarArchiveIndex.Normalize(layerNames[i], layerWhat), layerWhat)
                ?? throw new InvalidDataException($"{layerWhat} is missing from the archive.");
            members.Add(member);
            layers.Add(new LayerDescriptor(config.DiffIds[i], "application/vnd.docker.image.rootfs.diff.tar", member.Size));
        }
        _layers = members;
        _resolved = new ResolvedImage(null, configDigest.ToString(), config, layers);
        return _resolved;
    }

    public async Task<Stream> OpenLayerAsync(int index, CancellationToken cancellationToken)
    {
        TarMember member = ImageSourceGuard.Layer(Description, _resolved, _layers, index);
        OciDigest diffId = OciDigest.Parse(_resolved.Layers[index].Digest, Description);
        string what = $"layer {index + 1} of {_layers.Count} ({diffId}) of {Description}";
        // The blob has no digest of its own here: the diff_id check on the uncompressed stream (always on) covers it.
        var blob = new DigestVerifyingStream(_archive.OpenMember(member), DigestFromName(member.Name), member.Size, what);
        return await LayerStream.OpenAsync(blob, diffId, what, cancellationToken);
    }

    public ValueTask DisposeAsync()
    {
        _archive.Dispose();
        return ValueTask.CompletedTask;
    }

    private JsonElement Select(JsonElement images, string what)
    {
        int count = images.GetArrayLength();
        if (_position is int position)
        {
            if (position < 0 || position >= count)
            {
                throw new VesselException(VesselErrorReason.NotFound, $"{Description}: there is no image @{position}; manifest.json lists {count}.");
            }
            return OciDocuments.RequireObject(images[position], $"{what}, image {position}");
        }
        var tags = new List<string>();
        foreach (JsonElement image in images.EnumerateArray())
        {
            OciDocuments.RequireObject(image, what);
            var repoTags = OciDocuments.OptionalStringList(image, "RepoTags", what) ?? [];
            if (_name is not null && repoTags.Any(t => SameName(t, _name)))
            {
                return image;
            }
            tags.AddRange(repoTags);
        }
        if (_name is not null)
        {
            throw new VesselException(VesselErrorReason.NotFound,
                $"{Description}: no image named '{_name}'; it holds {(tags.Count == 0 ? "untagged images only" : string.Join(", ", tags))}.");
        }
        return count switch
        {
            1 => images[0],
            0 => throw new InvalidDataException($"{what} lists no images."),
            _ => throw new VesselException(VesselErrorReason.InvalidInput,
                $"{Description} holds {count} images ({string.Join(", ", tags)}); name one as docker-archive:PATH:NAME:TAG or docker-archive:PATH:@N."),
        };
    }

    /// <summary>"busybox:latest" also matches "docker.io/library/busybox:latest".</summary>
    private static bool SameName(string a, string b) => Familiar(a) == Familiar(b);

    private static string Familiar(string name)
    {
        foreach (string prefix in new[] { "docker.io/library/", "docker.io/", "index.docker.io/library/" })
        {
            if (name.StartsWith(prefix, StringComparison.Ordinal))
            {
                return name[prefix.Length..];
            }
        }
        return name;
    }

    /// <summary>Docker and skopeo name blobs by their digest ("HEX.json", "HEX.tar", "blobs/sha256/HEX").</summary>
    private static OciDigest? DigestFromName(string name)
    {
        string file = name[(name.LastIndexOf('/') + 1)..];
        string stem = Path.GetFileNameWithoutExtension(file);
        if (name.StartsWith("blobs/sha256/", StringComparison.Ordinal))
        {
            stem = file;
        }
        else if (!file.EndsWith(".json", StringComparison.Ordinal) && !file.EndsWith(".tar", StringComparison.Ordinal))
        {
            return null;
        }
        return OciDigest.TryParse(OciDigest.Sha256Prefix + stem, out OciDigest digest) ? digest : null;
    }

    private async Task<byte[]> ReadMemberAsync(string name, string what, CancellationToken cancellationToken)
    {
        TarMember member = _archive.Find(name, what)
            ?? throw new InvalidDataException($"{Description} is not a docker-archive: it has no {name}.");
        if (member.Size > OciDocuments.MaxDocumentSize)
        {
            throw new InvalidDataException($"{what} is {member.Size} bytes; Vessel reads JSON documents up to {Vessel.Common.ByteSize.Format(OciDocuments.MaxDocumentSize)}.");
        }
        await using Stream stream = _archive.OpenMember(member);
        return await OciDocuments.ReadLimitedAsync(stream, OciDocuments.MaxDocumentSize, what, cancellationToken);
    }
}

/// <summary>
/// A plain root filesystem tarball (<c>.tar</c> or <c>.tar.gz</c>, like Alpine's minirootfs):
/// one layer, an empty config. Its identity is the file's sha256. <see cref="ResolveAsync"/>
/// computes it up front (a template build needs it for its cache key) and the layer stream
/// checks it again, so a file changed in between is noticed;
/// <see cref="ResolveForStreamingAsync"/> leaves it to the layer stream, which reads the
/// file once. gzip truncation, which .NET's decoder does not report, is caught by comparing
/// the output length with the gzip trailer. A cache that knows the file's identity skips the
/// up-front hash (<see cref="IFileImageSource"/>).
/// </summary>
internal sealed class RootfsTarballImageSource(string path, string description) : IStreamingDigestImageSource, IFileImageSource
{
    private readonly string _path = path;
    private ResolvedImage? _resolved;
    private DigestVerifyingStream? _blob;
    private long _hashedBytes;

    public string Description { get; } = description;

    public string? StreamedContentDigest => _blob?.Actual?.ToString();

    /// <summary>Bytes of the file read so far (its magic not counted): the up-front hash and the layer stream.</summary>
    public long BytesRead => _hashedBytes + (_blob?.BytesRead ?? 0);

    public Task<ResolvedImage> ResolveAsync(CancellationToken cancellationToken) => ResolveCoreAsync(hash: true, null, cancellationToken);

    public async Task<ResolvedImage> ResolveForStreamingAsync(CancellationToken cancellationToken) =>
        _resolved ?? await ResolveCoreAsync(hash: false, null, cancellationToken);

    public Task<ResolvedImage> ResolveKnownAsync(string contentDigest, CancellationToken cancellationToken) =>
        ResolveCoreAsync(hash: false, OciDigest.Parse(contentDigest, $"the recorded digest of tarball {Description}").ToString(), cancellationToken);

    public FileIdentity? GetIdentity()
    {
        try
        {
            using SafeFileHandle handle = File.OpenHandle(_path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return LinuxFile.TryGetIdentity(handle);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // gone or unreadable: the full read says why
        }
    }

    private async Task<ResolvedImage> ResolveCoreAsync(bool hash, string? known, CancellationToken cancellationToken)
    {
        await using var file = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
        byte[] magic = new byte[2];
        int have = await file.ReadAtLeastAsync(magic, 2, throwOnEndOfStream: false, cancellationToken);
        file.Position = 0;
        string digest = known ?? string.Empty;
        if (hash)
        {
            digest = OciDigest.FromHash(await SHA256.HashDataAsync(file, cancellationToken)).ToString();
            _hashedBytes += file.Position;
        }
        string mediaType = have == 2 && magic[0] == 0x1f && magic[1] == 0x8b ? OciMediaTypes.LayerGzip : OciMediaTypes.Layer;
        _resolved = new ResolvedImage(null, digest, ImageConfig.Empty, [new LayerDescriptor(digest, mediaType, file.Length)]);
        return _resolved;
    }

    public async Task<Stream> OpenLayerAsync(int index, CancellationToken cancellationToken)
    {
        if (_resolved is null)
        {
            throw new InvalidOperationException($"{Description}: call ResolveAsync before OpenLayerAsync.");
        }
        ArgumentOutOfRangeException.ThrowIfNotEqual(index, 0);
        LayerDescriptor layer = _resolved.Layers[0];
        string what = $"tarball {Description}";
        var file = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
        OciDigest? expected = layer.Digest.Length > 0 ? OciDigest.Parse(layer.Digest, what) : null;
        _blob = new DigestVerifyingStream(file, expected, layer.Size, what, computeDigest: true);
        return await LayerStream.OpenAsync(_blob, diffId: null, what, cancellationToken);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
