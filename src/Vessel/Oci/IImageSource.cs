namespace Vessel.Oci;

/// <summary>
/// A container image to read: its config and its layers in order (lowest first).
/// Implementations: OCI layout directory, oci-archive and docker-archive tarballs, a plain
/// root filesystem tarball (one layer, empty config), and a registry reference.
/// </summary>
public interface IImageSource : IAsyncDisposable
{
    /// <summary>What the user named, for messages ("alpine:3.20", "./img.tar").</summary>
    public string Description { get; }

    /// <summary>Reads the manifest and config; picks linux/amd64 from an index. Call once before opening layers.</summary>
    public Task<ResolvedImage> ResolveAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Opens layer <paramref name="index"/> (0 = lowest) as an uncompressed tar stream.
    /// The blob's digest is checked while streaming: the read that reaches the end of the
    /// stream throws <see cref="InvalidDataException"/> naming the layer when it does not
    /// match, so consumers must read every layer stream to its end (Read returns 0).
    /// </summary>
    public Task<Stream> OpenLayerAsync(int index, CancellationToken cancellationToken);
}

/// <summary>An image after its manifest and config were read.</summary>
/// <param name="ManifestDigest">sha256:... of the manifest (null for a plain tarball, which has none).</param>
/// <param name="ContentDigest">A digest that identifies the image's content: the manifest digest, or the tarball's sha256.</param>
public sealed record ResolvedImage(
    string? ManifestDigest,
    string ContentDigest,
    ImageConfig Config,
    IReadOnlyList<LayerDescriptor> Layers);

/// <summary>One layer blob as the manifest lists it.</summary>
public sealed record LayerDescriptor(string Digest, string MediaType, long Size);

/// <summary>The parts of the OCI image config Vessel keeps with a rootfs (image-spec config.md).</summary>
public sealed partial record ImageConfig
{
    public static ImageConfig Empty { get; } = new();

    public string Architecture { get; init; } = "amd64";
    public string Os { get; init; } = "linux";
    public IReadOnlyList<string> Env { get; init; } = [];
    public IReadOnlyList<string>? Entrypoint { get; init; }
    public IReadOnlyList<string>? Cmd { get; init; }
    public string? WorkingDir { get; init; }
    public string? User { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
    public IReadOnlyList<string> DiffIds { get; init; } = [];
}

/// <summary>
/// A source that can name its content as its one layer streams instead of reading it
/// twice: a plain tarball's identity is its sha256, which a separate pass up front would
/// cost as much again as the build's own read.
/// </summary>
internal interface IStreamingDigestImageSource : IImageSource
{
    /// <summary>
    /// Like <see cref="IImageSource.ResolveAsync"/>, but unless the source was already
    /// resolved the content digest is left empty (and the layer's digest with it) until the
    /// layers were read to their end; then <see cref="StreamedContentDigest"/> holds it.
    /// </summary>
    public Task<ResolvedImage> ResolveForStreamingAsync(CancellationToken cancellationToken);

    /// <summary>The content digest of what the layer streams read; null before they reached their end.</summary>
    public string? StreamedContentDigest { get; }
}
