using Vessel.Blocks;

namespace Vessel.Nbd;

/// <summary>
/// Something the NBD server serves: a flat file, a read-only build or a copy-on-write
/// overlay (see <see cref="BlockDeviceExport"/>). The server checks ranges, read-only-ness
/// and sizes before calling; an exception becomes an NBD error for that request only.
/// </summary>
internal interface INbdExport
{
    /// <summary>The name clients ask for (<c>nbd+unix:///NAME?socket=...</c>); "" is the default export.</summary>
    string Name { get; }

    string Description { get; }

    long Size { get; }

    bool IsReadOnly { get; }

    /// <summary>The block size clients should align to (reported as the preferred size).</summary>
    int PreferredBlockSize { get; }

    ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken);

    /// <summary>Reads without blocking on the disk, or returns false (see <see cref="IBlockDevice.TryReadCached"/>).</summary>
    bool TryReadCached(long offset, Span<byte> destination);

    /// <summary>The range as page-cached, never-written file stretches and zeros, for sendfile (see <see cref="IBlockDevice.TryGetCachedFileRanges"/>).</summary>
    bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges);

    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken);

    ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken);

    ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken);

    ValueTask FlushAsync(CancellationToken cancellationToken);

    /// <summary>Allocation of <c>[offset, offset + length)</c>, at most <paramref name="maxExtents"/> extents, at least one.</summary>
    IReadOnlyList<DeviceExtent> GetBlockStatus(long offset, long length, int maxExtents);
}

/// <summary>Serves any <see cref="IBlockDevice"/>; the device stays owned by the caller.</summary>
internal sealed class BlockDeviceExport(string name, IBlockDevice device, bool readOnly = false, string? description = null) : INbdExport
{
    public string Name { get; } = name;

    public string Description { get; } = description ?? string.Empty;

    public IBlockDevice Device { get; } = device;

    public long Size => Device.Size;

    public bool IsReadOnly { get; } = readOnly || device.IsReadOnly;

    public int PreferredBlockSize => Device.BlockSize;

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken) => Device.ReadAsync(offset, destination, cancellationToken);

    public bool TryReadCached(long offset, Span<byte> destination) => Device.TryReadCached(offset, destination);

    public bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges) => Device.TryGetCachedFileRanges(offset, length, ranges);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken) => Device.WriteAsync(offset, source, cancellationToken);

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken) => Device.TrimAsync(offset, length, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken) => Device.WriteZeroesAsync(offset, length, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken) => Device.FlushAsync(cancellationToken);

    public IReadOnlyList<DeviceExtent> GetBlockStatus(long offset, long length, int maxExtents) => Device.GetExtents(offset, length, maxExtents);
}
