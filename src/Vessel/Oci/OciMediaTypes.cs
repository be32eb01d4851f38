namespace Vessel.Oci;

/// <summary>Media types of image-spec (media-types.md) and of Docker's image manifest v2 schema 2.</summary>
public static class OciMediaTypes
{
    public const string ImageIndex = "application/vnd.oci.image.index.v1+json";
    public const string ImageManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string ImageConfig = "application/vnd.oci.image.config.v1+json";
    public const string Layer = "application/vnd.oci.image.layer.v1.tar";
    public const string LayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    public const string LayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    public const string LayerNondistributable = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    public const string LayerNondistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerManifestV1 = "application/vnd.docker.distribution.manifest.v1+json";
    public const string DockerManifestV1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws";
    public const string DockerConfig = "application/vnd.docker.container.image.v1+json";
    public const string DockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    /// <summary>An uncompressed Docker layer: what containerd records for the layers of an imported docker-archive.</summary>
    public const string DockerLayer = "application/vnd.docker.image.rootfs.diff.tar";
    public const string DockerLayerForeignGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    public static bool IsIndex(string? mediaType) => mediaType is ImageIndex or DockerManifestList;

    public static bool IsManifest(string? mediaType) => mediaType is ImageManifest or DockerManifest;

    /// <summary>The layer compression a media type announces (the bytes have the last word: see <see cref="LayerCompression"/>).</summary>
    internal static LayerCompression CompressionOf(string mediaType) => mediaType switch
    {
        LayerGzip or LayerNondistributableGzip or DockerLayerGzip or DockerLayerForeignGzip => LayerCompression.Gzip,
        LayerZstd => LayerCompression.Zstd,
        _ when mediaType.EndsWith("+gzip", StringComparison.Ordinal) => LayerCompression.Gzip,
        _ when mediaType.EndsWith("+zstd", StringComparison.Ordinal) => LayerCompression.Zstd,
        _ => LayerCompression.None,
    };

    /// <summary>True for the layer media types Vessel can unpack (any tar, gzip or zstd; not foreign layers).</summary>
    internal static bool IsKnownLayer(string mediaType) => mediaType is Layer or LayerGzip or LayerZstd
        or LayerNondistributable or LayerNondistributableGzip or DockerLayer or DockerLayerGzip or DockerLayerForeignGzip
        || mediaType.StartsWith("application/vnd.oci.image.layer.", StringComparison.Ordinal);
}

/// <summary>How a layer blob is compressed.</summary>
public enum LayerCompression
{
    None,
    Gzip,
    Zstd,
}
