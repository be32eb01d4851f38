namespace Vessel.Blocks;

/// <summary>
/// A build's data in a bucket, read chunk by chunk on demand through the storage's cache; every
/// chunk is checked against the chunk index before it is used (<see cref="VerifiesReads"/>).
/// </summary>
internal sealed class S3LayerData(S3LayerStorage storage, Guid buildId, ChunkIndex index) : ILayerData
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
            string path = await storage.Cache.GetAsync(buildId, chunk, ct => storage.FetchChunkAsync(buildId, index, chunk, ct), cancellationToken);
            ChunkCache.Read(path, destination.Span[..n], within);
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
            if (storage.Cache.TryGet(buildId, (int)(at / index.ChunkSize)) is null)
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
                string? path = storage.Cache.TryGet(buildId, chunk);
                if (path is null)
                {
                    return false;
                }
                ChunkCache.Read(path, destination[..n], within);
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

    public bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges) => false;

    public FileIdentity? GetIdentity() => null;

    public void Dispose()
    {
    }

    private void CheckRange(int length, long offset)
    {
        if (offset < 0 || offset + length > index.DataLength)
        {
            throw new InvalidDataException($"build {buildId}: read of {length} bytes at {offset} is outside its {index.DataLength} bytes of data.");
        }
    }
}
