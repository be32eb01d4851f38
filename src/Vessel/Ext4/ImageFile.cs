using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Vessel.Ext4;

/// <summary>
/// Positional writes into the image file, coalescing adjacent writes (consecutive small
/// files land next to each other) into large ones.
/// </summary>
internal sealed partial class ImageFile : IDisposable
{
    private const int CoalesceSize = 4 << 20;
    private readonly SafeFileHandle _handle;
    private readonly byte[] _buffer = new byte[CoalesceSize];
    private long _bufferStart = -1;
    private int _bufferLength;

    public ImageFile(string path)
    {
        _handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
    }

    public long BytesWritten { get; private set; }

    /// <summary>The end of the furthest write so far, in bytes.</summary>
    public long HighWater { get; private set; }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        BytesWritten += data.Length;
        HighWater = Math.Max(HighWater, offset + data.Length);
        if (_bufferLength > 0 && offset == _bufferStart + _bufferLength && _bufferLength + data.Length <= CoalesceSize)
        {
            data.CopyTo(_buffer.AsSpan(_bufferLength));
            _bufferLength += data.Length;
            return;
        }
        Flush();
        if (data.Length >= CoalesceSize / 2)
        {
            RandomAccess.Write(_handle, data, offset);
            return;
        }
        _bufferStart = offset;
        data.CopyTo(_buffer);
        _bufferLength = data.Length;
    }

    public void Flush()
    {
        if (_bufferLength > 0)
        {
            RandomAccess.Write(_handle, _buffer.AsSpan(0, _bufferLength), _bufferStart);
        }
        _bufferLength = 0;
        _bufferStart = -1;
    }

    public void SetLength(long length)
    {
        Flush();
        RandomAccess.SetLength(_handle, length);
    }

    /// <summary>Deallocates a range so stale data of deleted files never reaches the guest; writes zeros where holes are unsupported.</summary>
    public void Zero(long offset, long length)
    {
        Flush();
        const int FallocFlPunchHole = 0x02;
        const int FallocFlKeepSize = 0x01;
        if (Fallocate(_handle, FallocFlPunchHole | FallocFlKeepSize, offset, length) == 0)
        {
            return;
        }
        byte[] zeros = new byte[1 << 20];
        while (length > 0)
        {
            int n = (int)Math.Min(zeros.Length, length);
            RandomAccess.Write(_handle, zeros.AsSpan(0, n), offset);
            offset += n;
            length -= n;
        }
    }

    public void FlushToDisk()
    {
        Flush();
        RandomAccess.FlushToDisk(_handle);
    }

    public void Dispose()
    {
        _handle.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int Fallocate(SafeFileHandle fd, int mode, long offset, long len);
}
