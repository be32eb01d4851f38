namespace Vessel.Blocks;

/// <summary>
/// Where a layer store lives in an S3-compatible bucket, and how much of it a node keeps locally.
/// Written as <c>s3://BUCKET/PREFIX</c> on the command line (<see cref="Parse"/>); the endpoint and
/// keys come from the settings (VESSEL_S3_*), never from the URL.
/// </summary>
public sealed record S3StoreOptions
{
    /// <summary>The default size of a data chunk: one GET fetches this much, and the cache holds whole chunks.</summary>
    public const int DefaultChunkSize = 4 << 20;

    public required Uri Endpoint { get; init; }

    public required string Bucket { get; init; }

    /// <summary>Key prefix, empty or ending in '/'.</summary>
    public string Prefix { get; init; } = "";

    public required string AccessKey { get; init; }

    public required string SecretKey { get; init; }

    public string Region { get; init; } = "us-east-1";

    /// <summary>Bytes per data object; a power of two from 64 KiB to 64 MiB.</summary>
    public int ChunkSize { get; init; } = DefaultChunkSize;

    /// <summary>Where fetched chunks are kept (verified) for later reads.</summary>
    public required string CacheDirectory { get; init; }

    /// <summary>The cache's bound in bytes; least recently used chunks go first.</summary>
    public long CacheBytes { get; init; } = 8L << 30;

    /// <summary>True when <paramref name="store"/> names a bucket (<c>s3://</c>) rather than a directory.</summary>
    public static bool IsS3(string store) => store.StartsWith("s3://", StringComparison.Ordinal);

    /// <summary>Reads <c>s3://BUCKET[/PREFIX]</c> into (bucket, prefix ending in '/' or empty).</summary>
    public static (string Bucket, string Prefix) Parse(string url)
    {
        if (!IsS3(url))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"'{url}' is not an s3://BUCKET/PREFIX address.");
        }
        string rest = url["s3://".Length..];
        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        string bucket = slash < 0 ? rest : rest[..slash];
        string prefix = slash < 0 ? "" : rest[(slash + 1)..].Trim('/');
        if (bucket.Length is < 3 or > 63 || !bucket.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '.'))
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"'{url}': '{bucket}' is not a bucket name (3 to 63 of a-z, 0-9, '-' and '.').");
        }
        if (prefix.Length > 0 && prefix.Split('/').Any(p => p is "" or "." or ".."))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"'{url}': the prefix may not have empty, '.' or '..' parts.");
        }
        return (bucket, prefix.Length == 0 ? "" : prefix + "/");
    }
}
