using System.Buffers;
using System.Security.Cryptography;

namespace Vessel.Blocks;

/// <summary>
/// Whole files in a bucket, content-addressed (docs/formats/block-layer.md, "Object storage"):
/// <c>PREFIX/blobs/&lt;sha256&gt;/chunks</c> (a <see cref="ChunkIndex"/> bound to the file's
/// SHA-256) and <c>.../data/&lt;index&gt;</c> for every chunk that is not all zeros. A snapshot's
/// memory and device state travel this way. The same file is stored once; a download is
/// checked chunk by chunk and then whole, and appears under its name only when complete.
/// <paramref name="root"/> is the folder of the blobs (<c>blobs/</c>; a paused sandbox's snapshot
/// files go under <c>sandboxes/&lt;id&gt;/&lt;pause&gt;/</c>, deleted with it).
/// </summary>
internal sealed class S3BlobStore(S3LayerStorage storage, string root = "blobs/")
{
    private const int MaxInFlight = 4;

    /// <summary>What a manifest records of a blob.</summary>
    public sealed record BlobRef(string Sha256, long Length);

    /// <summary>What a put or a get moved: bytes sent or fetched, and the blob's length.</summary>
    public readonly record struct Transfer(BlobRef Blob, long Bytes, bool Skipped);

    public Task<Transfer> PutFileAsync(string path, CancellationToken cancellationToken) => PutFileAsync(path, storage.ChunkSize, cancellationToken);

    /// <summary>
    /// Puts the file in chunks of <paramref name="chunkSize"/> bytes (a power of two, 4 KiB to 64
    /// MiB); a blob already there (its index exists) is not sent again, whatever its chunk size.
    /// </summary>
    public async Task<Transfer> PutFileAsync(string path, int chunkSize, CancellationToken cancellationToken)
    {
        if (chunkSize < 4096 || chunkSize > 64 << 20 || (chunkSize & (chunkSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize, "a power of two from 4 KiB to 64 MiB");
        }
        await using FileStream file = new(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous);
        long length = file.Length;
        string sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(file, cancellationToken));
        var blob = new BlobRef(sha, length);
        if (await storage.TryGetAsync(IndexKey(sha), cancellationToken, 16 << 20) is not null)
        {
            return new Transfer(blob, 0, Skipped: true);
        }
        int count = ChunkIndex.CountFor(length, chunkSize);
        var digests = new byte[count][];
        long sent = 0;
        using var gate = new SemaphoreSlim(MaxInFlight);
        var puts = new List<Task>();
        try
        {
            for (int i = 0; i < count; i++)
            {
                byte[] chunk = new byte[(int)Math.Min(chunkSize, length - ((long)i * chunkSize))];
                await RandomAccess.ReadAsync(file.SafeFileHandle, chunk, (long)i * chunkSize, cancellationToken);
                digests[i] = SHA256.HashData(chunk);
                if (chunk.AsSpan().IndexOfAnyExcept((byte)0) < 0)
                {
                    continue; // zeros are not stored: a download leaves a hole
                }
                sent += chunk.Length;
                await gate.WaitAsync(cancellationToken);
                puts.Add(PutChunkAsync(ChunkKey(sha, i), chunk));
                foreach (Task failed in puts.Where(p => p.IsFaulted))
                {
                    await failed;
                }
            }
            await Task.WhenAll(puts);
        }
        catch
        {
            await Task.WhenAll(puts.Select(p => p.ContinueWith(_ => { }, TaskScheduler.Default)));
            await storage.DeletePrefixAsync(storage.KeyOf($"{root}{sha}/"), CancellationToken.None);
            throw;
        }
        var index = new ChunkIndex { BuildId = IdOf(sha), ChunkSize = chunkSize, DataLength = length, DataSha256 = Convert.FromHexString(sha), ChunkSha256 = digests };
        // The index last: a blob exists only when every chunk it lists is there.
        await storage.PutAsync(IndexKey(sha), index.ToBytes(), cancellationToken);
        return new Transfer(blob, sent, Skipped: false);

        async Task PutChunkAsync(string key, byte[] data)
        {
            try
            {
                await storage.PutAsync(key, data, cancellationToken);
            }
            finally
            {
                gate.Release();
            }
        }
    }

    /// <summary>
    /// Writes <paramref name="blob"/> to <paramref name="destination"/> (a temp name beside it
    /// first, renamed when its SHA-256 matched); <paramref name="what"/> names it in errors.
    /// </summary>
    public async Task<Transfer> GetFileAsync(BlobRef blob, string destination, string what, CancellationToken cancellationToken)
    {
        ChunkIndex index = await ReadIndexAsync(blob, what, cancellationToken);
        string partial = destination + ".part";
        long fetched = 0;
        try
        {
            using (var file = new FileStream(partial, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.Asynchronous))
            {
                file.SetLength(index.DataLength);
                fetched = await FetchChunksAsync(index, blob, file, what, cancellationToken);
                file.Position = 0;
                string sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(file, cancellationToken));
                if (sha != blob.Sha256)
                {
                    throw new VesselException(VesselErrorReason.Corrupt, $"{what}: blob {blob.Sha256} came back as {sha}; {storage.Location} is damaged.");
                }
            }
            File.Move(partial, destination, overwrite: true);
        }
        finally
        {
            File.Delete(partial);
        }
        return new Transfer(blob, fetched, Skipped: false);
    }

    /// <summary>
    /// <paramref name="blob"/> read in place, chunk by chunk on demand through the storage's
    /// chunk cache (keyed by the blob's id), every chunk checked before use; all-zero chunks read
    /// as zeros without a fetch. <paramref name="fetched"/> is called with each chunk's bytes as
    /// it arrives from the bucket (not for cache hits).
    /// </summary>
    public async Task<S3LayerData> OpenAsync(BlobRef blob, string what, Action<int>? fetched, CancellationToken cancellationToken)
    {
        ChunkIndex index = await ReadIndexAsync(blob, what, cancellationToken);
        var zeros = new HashSet<int>();
        var zeroDigests = new Dictionary<int, byte[]>();
        for (int i = 0; i < index.ChunkCount; i++)
        {
            int length = index.LengthOf(i);
            byte[] zero = zeroDigests.TryGetValue(length, out byte[]? d) ? d : zeroDigests[length] = ZeroDigest(length);
            if (index.ChunkSha256[i].AsSpan().SequenceEqual(zero))
            {
                zeros.Add(i);
            }
        }
        return new S3LayerData(storage.Cache, IdOf(blob.Sha256), index, async (chunk, ct) =>
        {
            byte[] data = await FetchChunkAsync(index, blob, chunk, what, ct);
            fetched?.Invoke(data.Length);
            return data;
        }, $"{what} (blob {blob.Sha256})", zeros);
    }

    /// <summary>The chunk index of <paramref name="blob"/>, checked to belong to it.</summary>
    private async Task<ChunkIndex> ReadIndexAsync(BlobRef blob, string what, CancellationToken cancellationToken)
    {
        if (blob.Sha256 is not { Length: 64 } || !blob.Sha256.All(char.IsAsciiHexDigitLower) || blob.Length < 0)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"{what}: '{blob.Sha256}' ({blob.Length} bytes) is not a blob reference (64 lowercase hex digits, a length).");
        }
        byte[] raw = await storage.TryGetAsync(IndexKey(blob.Sha256), cancellationToken, 16 << 20)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"{what}: blob {blob.Sha256} is missing from {storage.Location}.");
        ChunkIndex index = ChunkIndex.Read(raw, $"{what}: the chunk index of blob {blob.Sha256}");
        if (index.BuildId != IdOf(blob.Sha256) || index.DataLength != blob.Length || Convert.ToHexStringLower(index.DataSha256) != blob.Sha256)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"{what}: the chunk index stored as blob {blob.Sha256} belongs to other data; {storage.Location} is damaged.");
        }
        return index;
    }

    private async Task<long> FetchChunksAsync(ChunkIndex index, BlobRef blob, FileStream file, string what, CancellationToken cancellationToken)
    {
        long fetched = 0;
        var zeroDigests = new Dictionary<int, byte[]>();
        await Parallel.ForAsync(0, index.ChunkCount, new ParallelOptions { MaxDegreeOfParallelism = MaxInFlight, CancellationToken = cancellationToken }, async (i, ct) =>
        {
            int length = index.LengthOf(i);
            byte[] zeros;
            lock (zeroDigests)
            {
                zeros = zeroDigests.TryGetValue(length, out byte[]? d) ? d : zeroDigests[length] = ZeroDigest(length);
            }
            if (index.ChunkSha256[i].AsSpan().SequenceEqual(zeros))
            {
                return; // a hole: the file was set to its length and reads zeros here
            }
            byte[] data = await FetchChunkAsync(index, blob, i, what, ct);
            await RandomAccess.WriteAsync(file.SafeFileHandle, data, (long)i * index.ChunkSize, ct);
            Interlocked.Add(ref fetched, data.Length);
        });
        return fetched;
    }

    /// <summary>Chunk <paramref name="i"/> of <paramref name="blob"/>, checked against its SHA-256 in the index.</summary>
    private async Task<byte[]> FetchChunkAsync(ChunkIndex index, BlobRef blob, int i, string what, CancellationToken cancellationToken)
    {
        int length = index.LengthOf(i);
        string key = ChunkKey(blob.Sha256, i);
        byte[] data = await storage.TryGetAsync(key, cancellationToken, length)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"{what}: chunk {i} of blob {blob.Sha256} ({key}) is missing from {storage.Location}.");
        if (data.Length != length || !SHA256.HashData(data).AsSpan().SequenceEqual(index.ChunkSha256[i]))
        {
            throw new VesselException(VesselErrorReason.Corrupt,
                $"{what}: chunk {i} of blob {blob.Sha256} ({key}, {data.Length} bytes) does not match its SHA-256; {storage.Location} is damaged.");
        }
        return data;
    }

    private static byte[] ZeroDigest(int length)
    {
        byte[] zeros = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            Array.Clear(zeros, 0, length);
            return SHA256.HashData(zeros.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeros);
        }
    }

    /// <summary>The id an index of blob <paramref name="sha"/> carries: its first 16 bytes, so an index is bound to its blob.</summary>
    private static Guid IdOf(string sha) => new(Convert.FromHexString(sha.AsSpan(0, 32)), bigEndian: true);

    private string IndexKey(string sha) => storage.KeyOf($"{root}{sha}/{S3LayerStorage.IndexName}");

    private string ChunkKey(string sha, int index) => storage.KeyOf($"{root}{sha}/{S3LayerStorage.ChunkName(index)}");
}
