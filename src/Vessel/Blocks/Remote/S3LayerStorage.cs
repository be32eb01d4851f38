using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;

namespace Vessel.Blocks;

/// <summary>
/// Builds in an S3-compatible bucket: <c>PREFIX/builds/&lt;id&gt;/header</c>, <c>.../chunks</c> (a
/// <see cref="ChunkIndex"/>) and the data cut in chunks, <c>.../data/&lt;index, 8 hex digits&gt;</c>.
/// An upload puts the chunks, then the index, then the header: a build is listed (has a
/// header) only when everything it needs is there. Reads fetch a chunk at a time, on demand,
/// check it against the index and keep it in a bounded local <see cref="ChunkCache"/>, so a
/// disk served from here starts before the whole build has arrived.
/// </summary>
internal sealed class S3LayerStorage : ILayerStorage, IDisposable
{
    public const string HeaderName = "header";
    public const string IndexName = "chunks";
    private const int MaxPutsInFlight = 4;
    private readonly AmazonS3Client _s3;
    private readonly S3StoreOptions _options;

    public S3LayerStorage(S3StoreOptions options)
    {
        if (options.ChunkSize < 64 << 10 || options.ChunkSize > 64 << 20 || (options.ChunkSize & (options.ChunkSize - 1)) != 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"chunk size {options.ChunkSize} is not a power of two from 64 KiB to 64 MiB.");
        }
        _options = options;
        var config = new AmazonS3Config
        {
            ServiceURL = options.Endpoint.ToString(),
            ForcePathStyle = true,
            AuthenticationRegion = options.Region,
            // S3-compatible servers (s3rver, older MinIO, radosgw) do not all take the SDK's
            // default trailing checksums; chunks carry their own SHA-256 in the index anyway.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
            MaxErrorRetry = 3,
        };
        _s3 = new AmazonS3Client(new BasicAWSCredentials(options.AccessKey, options.SecretKey), config);
        Cache = new ChunkCache(options.CacheDirectory, options.CacheBytes);
    }

    public string Location => $"s3://{_options.Bucket}/{_options.Prefix}";

    /// <summary>Bytes per data object.</summary>
    internal int ChunkSize => _options.ChunkSize;

    /// <summary>The local cache of verified chunks (its counters say what was fetched).</summary>
    public ChunkCache Cache { get; }

    public async Task<IReadOnlyList<Guid>> ListAsync(CancellationToken cancellationToken)
    {
        var ids = new List<Guid>();
        foreach (string key in await ListKeysAsync("builds/", cancellationToken))
        {
            string rest = key["builds/".Length..];
            if (rest.EndsWith("/" + HeaderName, StringComparison.Ordinal)
                && Guid.TryParseExact(rest[..^(HeaderName.Length + 1)], "D", out Guid id))
            {
                ids.Add(id);
            }
        }
        ids.Sort();
        return ids;
    }

    public Task<byte[]?> TryReadHeaderAsync(Guid buildId, CancellationToken cancellationToken)
        => TryGetAsync(Key(buildId, HeaderName), cancellationToken);

    public async Task<ILayerData> OpenDataAsync(Guid buildId, CancellationToken cancellationToken)
    {
        byte[] raw = await TryGetAsync(Key(buildId, IndexName), cancellationToken)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"build {buildId}: chunk index is missing from {Location}.");
        ChunkIndex index = ChunkIndex.Read(raw, $"build {buildId}'s chunk index in {Location}");
        byte[] header = await TryGetAsync(Key(buildId, HeaderName), cancellationToken)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"build {buildId} is not in {Location}.");
        BuildHeader parsed = BuildHeader.Read(header, $"build {buildId}");
        if (index.BuildId != buildId || index.DataLength != parsed.DataLength || !index.DataSha256.AsSpan().SequenceEqual(parsed.DataSha256))
        {
            throw new VesselException(VesselErrorReason.Corrupt,
                $"build {buildId}: its chunk index in {Location} does not belong to its header (another build's, or damaged).");
        }
        return new S3LayerData(Cache, buildId, index, (chunk, ct) => FetchChunkAsync(buildId, index, chunk, ct), $"build {buildId}");
    }

    public Task<ILayerUpload> BeginUploadAsync(Guid buildId, CancellationToken cancellationToken)
        => Task.FromResult<ILayerUpload>(new S3LayerUpload(this, buildId, _options.ChunkSize, MaxPutsInFlight));

    // Stamps vouch for local files; chunks are verified as they arrive instead.
    public Task<byte[]?> TryReadStampAsync(Guid buildId, CancellationToken cancellationToken) => Task.FromResult<byte[]?>(null);

    public Task<bool> TryWriteStampAsync(Guid buildId, ReadOnlyMemory<byte> stamp, CancellationToken cancellationToken) => Task.FromResult(false);

    public Task DeleteStampAsync(Guid buildId, CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task DeleteAsync(Guid buildId, CancellationToken cancellationToken)
    {
        if (await TryGetAsync(Key(buildId, HeaderName), cancellationToken) is null)
        {
            throw new VesselException(VesselErrorReason.NotFound, $"build {buildId} is not in {Location}.");
        }
        // The header first: from then on nobody lists or opens the build; the rest follows.
        await DeleteKeysAsync([Key(buildId, HeaderName)], cancellationToken);
        await DeletePrefixAsync(Key(buildId, ""), cancellationToken);
        Cache.Forget(buildId);
    }

    public void Dispose() => _s3.Dispose();

    internal string Key(Guid buildId, string name) => $"{_options.Prefix}builds/{buildId:D}/{name}";

    /// <summary>A key outside the builds (<c>PREFIX/</c> + <paramref name="relative"/>): blobs and template manifests.</summary>
    internal string KeyOf(string relative) => _options.Prefix + relative;

    /// <summary>The keys under <c>PREFIX/</c> + <paramref name="relative"/>, without the prefix.</summary>
    internal async Task<IReadOnlyList<string>> ListKeysAsync(string relative, CancellationToken cancellationToken)
    {
        var keys = new List<string>();
        var request = new ListObjectsV2Request { BucketName = _options.Bucket, Prefix = KeyOf(relative) };
        do
        {
            ListObjectsV2Response response = await CallAsync(() => _s3.ListObjectsV2Async(request, cancellationToken), $"list {relative}");
            keys.AddRange((response.S3Objects ?? []).Select(o => o.Key[_options.Prefix.Length..]));
            request.ContinuationToken = response.IsTruncated == true ? response.NextContinuationToken : null;
        }
        while (request.ContinuationToken is not null);
        return keys;
    }

    internal static string ChunkName(int index) => "data/" + index.ToString("x8", CultureInfo.InvariantCulture);

    /// <summary>Fetches chunk <paramref name="index"/> and checks it against the index (the cache calls this once per chunk).</summary>
    internal async Task<byte[]> FetchChunkAsync(Guid buildId, ChunkIndex index, int chunk, CancellationToken cancellationToken)
    {
        int length = index.LengthOf(chunk);
        string key = Key(buildId, ChunkName(chunk));
        byte[] data = await TryGetAsync(key, cancellationToken, length)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"build {buildId}: chunk {chunk} ({key}) is missing from {Location}.");
        if (data.Length != length || !SHA256.HashData(data).AsSpan().SequenceEqual(index.ChunkSha256[chunk]))
        {
            throw new VesselException(VesselErrorReason.Corrupt,
                $"build {buildId}: chunk {chunk} ({key}, {data.Length} bytes) does not match its SHA-256 in the chunk index; the bucket at {Location} is damaged.");
        }
        return data;
    }

    internal Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        return CallAsync(async () =>
        {
            using var body = new MemoryStream(data.ToArray(), writable: false);
            var request = new PutObjectRequest { BucketName = _options.Bucket, Key = key, InputStream = body, UseChunkEncoding = false, AutoCloseStream = false };
            return await _s3.PutObjectAsync(request, cancellationToken);
        }, $"put {key}");
    }

    internal async Task DeletePrefixAsync(string prefix, CancellationToken cancellationToken)
    {
        var request = new ListObjectsV2Request { BucketName = _options.Bucket, Prefix = prefix };
        do
        {
            ListObjectsV2Response response = await CallAsync(() => _s3.ListObjectsV2Async(request, cancellationToken), $"list {prefix}");
            var keys = (response.S3Objects ?? []).Select(o => o.Key).ToList();
            if (keys.Count > 0)
            {
                await DeleteKeysAsync(keys, cancellationToken);
            }
            request.ContinuationToken = response.IsTruncated == true ? response.NextContinuationToken : null;
        }
        while (request.ContinuationToken is not null);
    }

    private Task DeleteKeysAsync(List<string> keys, CancellationToken cancellationToken)
    {
        var request = new DeleteObjectsRequest { BucketName = _options.Bucket, Objects = keys.Select(k => new KeyVersion { Key = k }).ToList() };
        return CallAsync(() => _s3.DeleteObjectsAsync(request, cancellationToken), $"delete {keys.Count} objects");
    }

    /// <summary>An object's bytes, or null when it does not exist; refuses one larger than <paramref name="limit"/>.</summary>
    internal async Task<byte[]?> TryGetAsync(string key, CancellationToken cancellationToken, long limit = 1L << 30)
    {
        try
        {
            using GetObjectResponse response = await _s3.GetObjectAsync(new GetObjectRequest { BucketName = _options.Bucket, Key = key }, cancellationToken);
            if (response.ContentLength > limit)
            {
                throw new VesselException(VesselErrorReason.Corrupt, $"{Location}: {key} is {response.ContentLength} bytes, more than the {limit} it may be.");
            }
            byte[] data = new byte[response.ContentLength];
            await response.ResponseStream.ReadExactlyAsync(data, cancellationToken);
            return data;
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
        catch (Exception e) when (e is AmazonServiceException or HttpRequestException or AmazonClientException && e is not VesselException)
        {
            throw Unreachable($"get {key}", e);
        }
    }

    private async Task<T> CallAsync<T>(Func<Task<T>> call, string what)
    {
        try
        {
            return await call();
        }
        catch (Exception e) when (e is AmazonServiceException or HttpRequestException or AmazonClientException)
        {
            throw Unreachable(what, e);
        }
    }

    private VesselException Unreachable(string what, Exception e)
    {
        string detail = e is AmazonServiceException s ? $"{(int)s.StatusCode} {s.ErrorCode}: {s.Message}" : e.Message;
        return new VesselException(VesselErrorReason.Unavailable,
            $"object store {_options.Endpoint} ({Location}): {what} failed: {detail}. Check the endpoint, the bucket and the keys (VESSEL_S3_*).", e);
    }
}
