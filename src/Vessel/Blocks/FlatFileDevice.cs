using Microsoft.Win32.SafeHandles;
using Vessel.Common;
using Vessel.Interop;

namespace Vessel.Blocks;

/// <summary>
/// A plain image file as a device: positional reads and writes, trim and write-zeroes punch
/// holes, and extents come from SEEK_DATA/SEEK_HOLE so block status shows the file's holes.
/// </summary>
internal sealed class FlatFileDevice : IBlockDevice, IDisposable
{
    private readonly SafeFileHandle _handle;
    private volatile bool _noWaitUnsupported;

    private FlatFileDevice(string path, SafeFileHandle handle, bool readOnly)
    {
        Path = path;
        _handle = handle;
        IsReadOnly = readOnly;
        Size = RandomAccess.GetLength(handle);
    }

    public string Path { get; }

    public long Size { get; }

    public int BlockSize => BuildHeader.DefaultBlockSize;

    public bool IsReadOnly { get; }

    public static FlatFileDevice Open(string path, bool readOnly)
    {
        try
        {
            SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
            return new FlatFileDevice(path, handle, readOnly);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new VesselException(VesselErrorReason.NotFound, $"image '{path}' does not exist.", e);
        }
    }

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        Span<byte> span = destination.Span;
        int n = PositionalRead.Fill(_handle, span, offset);
        span[n..].Clear(); // the file shrank under us: what is gone reads as zeros
        return ValueTask.CompletedTask;
    }

    public bool TryReadCached(long offset, Span<byte> destination)
    {
        if (_noWaitUnsupported)
        {
            return false;
        }
        int n = LinuxFile.ReadCached(_handle, destination, offset);
        _noWaitUnsupported = n < 0;
        return n == destination.Length; // a short read (not cached, or the file shrank) goes the slow way
    }

    public bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges)
    {
        // Only a read-only export: the pages stay shared with the socket until the client reads them.
        ranges.Add(new FileRange(_handle, offset, length));
        return IsReadOnly && LinuxFile.IsCached(_handle, offset, length);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken)
    {
        RandomAccess.Write(_handle, source.Span, offset);
        return ValueTask.CompletedTask;
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken) => WriteZeroesAsync(offset, length, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken)
    {
        if (!UnixFile.TryPunchHole(_handle, offset, length))
        {
            byte[] zeros = new byte[Math.Min(length, 1 << 20)];
            for (long at = offset; at < offset + length; at += zeros.Length)
            {
                RandomAccess.Write(_handle, zeros.AsSpan(0, (int)Math.Min(zeros.Length, offset + length - at)), at);
            }
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        if (!IsReadOnly)
        {
            RandomAccess.FlushToDisk(_handle);
        }
        return ValueTask.CompletedTask;
    }

    public IReadOnlyList<DeviceExtent> GetExtents(long offset, long length, int maxExtents)
    {
        var result = new List<DeviceExtent>();
        long end = offset + length;
        while (offset < end && result.Count < maxExtents)
        {
            long data = LinuxFile.NextData(_handle, offset);
            if (data < 0 || data >= end)
            {
                result.Add(new DeviceExtent(end - offset, ExtentKind.Zero));
                break;
            }
            if (data > offset)
            {
                result.Add(new DeviceExtent(data - offset, ExtentKind.Zero));
                offset = data;
                continue;
            }
            long hole = Math.Min(end, LinuxFile.NextHole(_handle, offset));
            result.Add(new DeviceExtent(hole - offset, ExtentKind.Data));
            offset = hole;
        }
        return result;
    }

    public void Dispose() => _handle.Dispose();
}
