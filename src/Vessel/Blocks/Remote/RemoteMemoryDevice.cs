namespace Vessel.Blocks;

/// <summary>
/// A template snapshot's guest RAM read from the bucket (<see cref="S3BlobStore.OpenAsync"/>) as
/// a block device, so that nbdfuse can show it to QEMU as the <c>memory</c> file. Reads fetch
/// and verify chunks on demand; the first failure is kept (<see cref="Failure"/>) so that a
/// restore that dies of it (QEMU gets SIGBUS on the page) names the object, not just the crash.
/// It reports itself writable because QEMU opens <c>mem-path</c> read-write even for a private
/// mapping (a read-only FUSE file fails with EACCES); a <c>share=off</c> mapping never writes
/// back, and any write that comes is refused.
/// </summary>
internal sealed class RemoteMemoryDevice(S3LayerData data, string what) : ReadOnlyBlockDevice, IBlockDevice, IDisposable
{
    private VesselException? _failure;

    public long Size => data.Length;

    public int BlockSize => 4096;

    public bool IsReadOnly => false;

    /// <summary>The first read that failed (a chunk missing, damaged, the bucket unreachable), or null.</summary>
    public VesselException? Failure => Volatile.Read(ref _failure);

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        try
        {
            await data.ReadAsync(destination, offset, cancellationToken);
        }
        catch (Exception e) when (e is VesselException or IOException or InvalidDataException)
        {
            Interlocked.CompareExchange(ref _failure, e as VesselException ?? new VesselException(VesselErrorReason.Unavailable, $"{what}: {e.Message}", e), null);
            throw;
        }
    }

    public bool TryReadCached(long offset, Span<byte> destination) => data.TryReadCached(destination, offset);

    public bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges) => false;

    public IReadOnlyList<DeviceExtent> GetExtents(long offset, long length, int maxExtents)
    {
        var extents = new List<DeviceExtent>();
        long end = offset + length;
        while (offset < end)
        {
            int chunk = (int)(offset / data.ChunkSize);
            long n = Math.Min(end, ((long)chunk + 1) * data.ChunkSize) - offset;
            if (!DeviceExtent.TryAppend(extents, new DeviceExtent(n, data.IsZeroChunk(chunk) ? ExtentKind.Zero : ExtentKind.Data), maxExtents))
            {
                break;
            }
            offset += n;
        }
        return extents;
    }

    public void Dispose() => data.Dispose();

    protected override VesselException ReadOnlyError() => new(VesselErrorReason.InvalidInput, $"{what} is read-only: a restored VM maps it privately and never writes it.");
}
