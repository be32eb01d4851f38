using System.Text.Json;

namespace Vessel.Oci;

/// <summary>The files of an OCI image layout (image-spec image-layout.md): a directory or an oci-archive tarball.</summary>
internal interface IOciLayoutFiles : IDisposable
{
    /// <summary>Opens a file by its path inside the layout, or returns null when there is none.</summary>
    public Stream? TryOpen(string relativePath);
}

/// <summary>An image in an OCI layout, picked by tag (the ref.name annotation), by digest, or as the only one.</summary>
internal sealed class OciLayoutImageSource : OciImageSource
{
    private readonly IOciLayoutFiles _files;
    private readonly string? _tag;
    private readonly OciDigest? _digest;

    public OciLayoutImageSource(IOciLayoutFiles files, string? tag, OciDigest? digest, string description, ImageSourceOptions options)
        : base(description, options)
    {
        _files = files;
        _tag = tag;
        _digest = digest;
    }

    public override async ValueTask DisposeAsync()
    {
        _files.Dispose();
        await base.DisposeAsync();
    }

    protected override async Task<(OciDescriptor Root, byte[]? Json, string? ContentType)> SelectRootAsync(CancellationToken cancellationToken)
    {
        await CheckLayoutVersionAsync(cancellationToken);
        string what = $"index.json of {Description}";
        byte[] json = await ReadFileAsync("index.json", what, cancellationToken);
        object document = OciDocuments.ParseManifestOrIndex(json, OciMediaTypes.ImageIndex, what);
        if (document is not OciIndex index)
        {
            throw new InvalidDataException($"{what} is not an image index.");
        }
        return (Select(index, what), null, null);
    }

    protected override Task<Stream> OpenBlobAsync(OciDescriptor descriptor, string what, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        // The digest was validated (sha256 + 64 hex), so the path cannot leave blobs/sha256.
        Stream? stream = _files.TryOpen($"blobs/sha256/{descriptor.Digest.Hex}");
        return stream is null
            ? throw new InvalidDataException($"{what}: the blob is missing from the layout (no blobs/sha256/{descriptor.Digest.Hex}).")
            : Task.FromResult(stream);
    }

    private OciDescriptor Select(OciIndex index, string what)
    {
        if (_digest is OciDigest digest)
        {
            OciDescriptor? byDigest = index.Manifests.FirstOrDefault(m => m.Digest == digest);
            return byDigest ?? throw new VesselException(VesselErrorReason.NotFound,
                $"{Description}: no image with digest {digest} in index.json; it lists {ListImages(index)}.");
        }
        if (_tag is not null)
        {
            var tagged = index.Manifests.Where(m => m.RefName == _tag).ToList();
            if (tagged.Count == 0)
            {
                throw new VesselException(VesselErrorReason.NotFound,
                    $"{Description}: no image tagged '{_tag}' in index.json; it lists {ListImages(index)}.");
            }
            if (tagged.Select(m => m.Digest).Distinct().Count() > 1)
            {
                throw new InvalidDataException($"{what}: the tag '{_tag}' names {tagged.Count} different images.");
            }
            return tagged[0];
        }
        if (index.Manifests.Count == 1)
        {
            return index.Manifests[0];
        }
        if (index.Manifests.Count == 0)
        {
            throw new InvalidDataException($"{what} lists no images.");
        }
        if (index.Manifests.All(m => m.Platform is not null && m.RefName is null))
        {
            return index.Manifests.FirstOrDefault(m => m.Platform is { Os: WantedOs, Architecture: WantedArchitecture })
                ?? throw new VesselException(VesselErrorReason.Unsupported,
                    $"{what} has no {WantedOs}/{WantedArchitecture} image; platforms present: {string.Join(", ", index.Manifests.Select(m => m.Platform!.ToString()).Distinct())}.");
        }
        throw new VesselException(VesselErrorReason.InvalidInput,
            $"{Description} holds {index.Manifests.Count} images ({ListImages(index)}); name one as PATH:TAG or PATH@sha256:DIGEST.");
    }

    private static string ListImages(OciIndex index) => index.Manifests.Count == 0
        ? "nothing"
        : string.Join(", ", index.Manifests.Select(m => m.RefName is null ? m.Digest.ToString() : $"'{OciDigest.Printable(m.RefName)}' ({m.Digest})"));

    private async Task CheckLayoutVersionAsync(CancellationToken cancellationToken)
    {
        string what = $"oci-layout of {Description}";
        byte[] json = await ReadFileAsync("oci-layout", what, cancellationToken);
        using JsonDocument doc = OciDocuments.ParseJson(json, what);
        string? version = OciDocuments.OptionalString(OciDocuments.RequireObject(doc.RootElement, what), "imageLayoutVersion", what);
        if (version is null || !version.StartsWith("1.", StringComparison.Ordinal))
        {
            throw new VesselException(VesselErrorReason.Unsupported,
                $"{what}: imageLayoutVersion '{OciDigest.Printable(version)}' is not 1.x, the version Vessel reads.");
        }
    }

    private async Task<byte[]> ReadFileAsync(string name, string what, CancellationToken cancellationToken)
    {
        await using Stream stream = _files.TryOpen(name)
            ?? throw new InvalidDataException($"{Description} is not an OCI image layout: it has no {name}.");
        return await OciDocuments.ReadLimitedAsync(stream, OciDocuments.MaxDocumentSize, what, cancellationToken);
    }
}

/// <summary>An OCI layout directory on disk.</summary>
internal sealed class DirectoryLayoutFiles : IOciLayoutFiles
{
    private readonly string _root;

    public DirectoryLayoutFiles(string root)
    {
        _root = Path.GetFullPath(root);
    }

    public Stream? TryOpen(string relativePath)
    {
        string path = Path.Combine(_root, relativePath);
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            return null;
        }
        if (info.LinkTarget is not null)
        {
            // A link could reach any file the user can read; layouts written by tools hold plain files.
            throw new InvalidDataException($"OCI layout '{_root}': {relativePath} is a symbolic link; refusing to follow it out of the layout.");
        }
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
    }

    public void Dispose()
    {
    }
}

/// <summary>An oci-archive: an OCI layout inside an uncompressed tar file, read in place.</summary>
internal sealed class ArchiveLayoutFiles(TarArchiveIndex archive, string what) : IOciLayoutFiles
{
    public Stream? TryOpen(string relativePath)
    {
        TarMember? member = archive.Find(relativePath, what);
        return member is null ? null : archive.OpenMember(member);
    }

    public void Dispose() => archive.Dispose();
}
