using Microsoft.Win32.SafeHandles;

namespace Vessel.Blocks;

/// <summary>What a range of a device holds, as block status reports it.</summary>
internal enum ExtentKind
{
    /// <summary>Stored data (may still happen to contain zeros).</summary>
    Data = 0,

    /// <summary>Never written or trimmed: reads as zeros and takes no storage.</summary>
    Zero = 1,
}

/// <summary>A stretch of a device and what it holds; a block status answer is a list of them.</summary>
internal readonly record struct DeviceExtent(long Length, ExtentKind Kind)
{
    /// <summary>
    /// Adds <paramref name="next"/> to <paramref name="extents"/>, lengthening the last extent
    /// when it is of the same kind; false (nothing added) when that would make more than
    /// <paramref name="maxExtents"/>.
    /// </summary>
    public static bool TryAppend(List<DeviceExtent> extents, DeviceExtent next, int maxExtents)
    {
        if (extents.Count > 0 && extents[^1].Kind == next.Kind)
        {
            extents[^1] = extents[^1] with { Length = extents[^1].Length + next.Length };
            return true;
        }
        if (extents.Count == maxExtents)
        {
            return false;
        }
        extents.Add(next);
        return true;
    }
}

/// <summary>A stretch of a device's bytes as they lie in one file (the file, the offset in it), or zeros when <see cref="File"/> is null.</summary>
internal readonly record struct FileRange(SafeFileHandle? File, long Offset, int Length);

/// <summary>
/// A virtual disk: a read-only build, a copy-on-write overlay, or a flat file. Offsets and
/// lengths are checked by the caller (the NBD server does); implementations may assume
/// <c>0 &lt;= offset</c> and <c>offset + length &lt;= Size</c>. Concurrent calls are allowed.
/// </summary>
internal interface IBlockDevice
{
    long Size { get; }

    int BlockSize { get; }

    bool IsReadOnly { get; }

    ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken);

    /// <summary>
    /// Fills <paramref name="destination"/> only if that needs no disk I/O: every byte is in the
    /// page cache or reads as zeros. False (with <paramref name="destination"/> partly written)
    /// means "use <see cref="ReadAsync"/>", never an error: the NBD server answers cached reads
    /// on its receive loop and sends only the rest to the thread pool.
    /// </summary>
    bool TryReadCached(long offset, Span<byte> destination);

    /// <summary>
    /// Appends to <paramref name="ranges"/> where <c>[offset, offset + length)</c> is stored, in
    /// order, when all of it is zeros or lies in files this device never writes and that are
    /// wholly in the page cache: the NBD server then hands the pages to the socket (sendfile)
    /// instead of copying them twice. False for anything else (writable data, uncached): the
    /// caller then reads normally and ignores what was appended.
    /// </summary>
    bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges);

    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken);

    /// <summary>Discards a range; afterwards it reads as zeros.</summary>
    ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken);

    ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken);

    ValueTask FlushAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Describes <c>[offset, offset + length)</c> as consecutive extents, at most
    /// <paramref name="maxExtents"/> of them (the last may end before <c>offset + length</c>).
    /// </summary>
    IReadOnlyList<DeviceExtent> GetExtents(long offset, long length, int maxExtents);
}
