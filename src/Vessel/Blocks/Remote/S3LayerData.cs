namespace Vessel.Blocks;

/// <summary>
/// Data in a bucket cut in chunks (a build's, or a blob's such as a template's memory), read
/// chunk by chunk on demand through the storage's cache; every chunk is checked against the
/// chunk index before it is used (<see cref="VerifiesReads"/>, done by <paramref name="fetch"/>).
/// Chunks listed in <paramref name="zeroChunks"/> (a blob's all-zero chunks, never stored) read
/// as zeros without a fetch. <paramref name="cacheId"/> keys the chunks in the cache.
/// </summary>
internal sealed class S3LayerData(ChunkCache cache, Guid cacheId, ChunkIndex index, Func<int, CancellationToken, Task<byte[]>> fetch, string what, IReadOnlySet<int>? zeroChunks = null) : ILayerData
{
    public long Length => index.DataLength;

    public bool VerifiesReads => true;

    public async ValueTask ReadAsync(Memory<byte> destination, long offset, CancellationToken cancellationToken)
    {
        CheckRange(destination.Length, offset);
        while (destination.Length > 0)
        {
            int chunk = (int)(offset / index.ChunkSize);
            long within = offset - ((long)chunk * index.ChunkSize);
            int n = (int)Math.Min(destination.Length, index.LengthOf(chunk) - within);
            if (zeroChunks?.Contains(chunk) == true)
            {
                destination.Span[..n].Clear();
            }
            else
            {
                string path = await cache.GetAsync(cacheId, chunk, ct => fetch(chunk, ct), cancellationToken);
                ChunkCache.Read(path, destination.Span[..n], within);
            }
            destination = destination[n..];
            offset += n;
        }
    }

    public bool TryReadCached(Span<byte> destination, long offset)
    {
        CheckRange(destination.Length, offset);
        // Only when every chunk of the range is here: a miss must not block the caller.
        for (long at = offset; at < offset + destination.Length; at = ((at / index.ChunkSize) + 1) * index.ChunkSize)
        {
            int chunk = (int)(at / index.ChunkSize);
            if (zeroChunks?.Contains(chunk) != true && cache.TryGet(cacheId, chunk) is null)
            {
                return false;
            }
        }
        try
        {
            while (destination.Length > 0)
            {
                int chunk = (int)(offset / index.ChunkSize);
                long within = offset - ((long)chunk * index.ChunkSize);
                int n = (int)Math.Min(destination.Length, index.LengthOf(chunk) - within);
                if (zeroChunks?.Contains(chunk) == true)
                {
                    destination[..n].Clear();
                }
                else if (cache.TryGet(cacheId, chunk) is { } path)
                {
                    ChunkCache.Read(path, destination[..n], within);
                }
                else
                {
                    return false;
                }
                destination = destination[n..];
                offset += n;
            }
            return true;
        }
        catch (FileNotFoundException)
        {
            return false; // evicted between the check and the read: the slow way fetches it again
        }
    }

    /// <summary>True when chunk <paramref name="chunk"/> reads as zeros without being stored.</summary>
    public bool IsZeroChunk(int chunk) => zeroChunks?.Contains(chunk) == true;

    /// <summary>Bytes per chunk.</summary>
    public int ChunkSize => index.ChunkSize;

    public bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges) => false;

    public FileIdentity? GetIdentity() => null;

    public void Dispose()
    {
    }

    private void CheckRange(int length, long offset)
    {
        if (offset < 0 || offset + length > index.DataLength)
        {
            throw new InvalidDataException($"{what}: read of {length} bytes at {offset} is outside its {index.DataLength} bytes of data.");
        }
    }
}
