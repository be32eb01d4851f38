using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vessel.Interop;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// A file's content digest that does not care how zeros are stored: SHA-256 over
/// (offset, bytes) of every 4 KiB block that holds a non-zero byte, then the length. Two files
/// have the same digest exactly when they have the same length and bytes, but reading a
/// sparse file only touches its data (SEEK_DATA/SEEK_HOLE), so a 4 GiB file of mostly holes
/// costs milliseconds instead of hashing 4 GiB of zeros.
/// </summary>
internal sealed class ContentDigest : IDisposable
{
    public const int BlockSize = 4096;
    private const int SeekData = 3;
    private const int SeekHole = 4;
    private const int Enxio = 6;
    private const int ChunkSize = 1 << 20;

    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly byte[] _pending = new byte[BlockSize];
    private long _position;
    private int _pendingLength;

    /// <summary>Feeds the next bytes of the content, in order.</summary>
    public void Append(ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            int n = Math.Min(data.Length, BlockSize - _pendingLength);
            data[..n].CopyTo(_pending.AsSpan(_pendingLength));
            _pendingLength += n;
            data = data[n..];
            if (_pendingLength == BlockSize)
            {
                FlushBlock();
            }
        }
    }

    /// <summary>Skips <paramref name="count"/> zero bytes (a hole).</summary>
    public void AppendZeros(long count)
    {
        while (count > 0 && _pendingLength > 0)
        {
            int n = (int)Math.Min(count, BlockSize - _pendingLength);
            _pending.AsSpan(_pendingLength, n).Clear();
            _pendingLength += n;
            count -= n;
            if (_pendingLength == BlockSize)
            {
                FlushBlock();
            }
        }
        long whole = count / BlockSize * BlockSize;
        _position += whole;
        count -= whole;
        if (count > 0)
        {
            _pending.AsSpan(0, (int)count).Clear();
            _pendingLength = (int)count;
        }
    }

    public string Finish()
    {
        if (_pendingLength > 0)
        {
            FlushBlock();
        }
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, _position);
        _hash.AppendData(length);
        return Convert.ToHexStringLower(_hash.GetHashAndReset());
    }

    public void Dispose() => _hash.Dispose();

    /// <summary>The digest of the bytes of <paramref name="data"/>.</summary>
    public static string Of(ReadOnlySpan<byte> data)
    {
        using var digest = new ContentDigest();
        digest.Append(data);
        return digest.Finish();
    }

    /// <summary>The digest of a regular file, reading only its data regions.</summary>
    public static string OfFile(string path)
    {
        using var digest = new ContentDigest();
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = RandomAccess.GetLength(handle);
        int fd = (int)handle.DangerousGetHandle();
        byte[] buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
        try
        {
            long offset = 0;
            while (offset < length)
            {
                long dataStart = Seek(fd, offset, SeekData, length, path);
                digest.AppendZeros(dataStart - offset);
                if (dataStart >= length)
                {
                    break;
                }
                long dataEnd = Math.Min(Seek(fd, dataStart, SeekHole, length, path), length);
                for (long o = dataStart; o < dataEnd;)
                {
                    int n = RandomAccess.Read(handle, buffer.AsSpan(0, (int)Math.Min(ChunkSize, dataEnd - o)), o);
                    if (n == 0)
                    {
                        throw new IOException($"{path}: unexpected end at {o} of {length}");
                    }
                    digest.Append(buffer.AsSpan(0, n));
                    o += n;
                }
                offset = dataEnd;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return digest.Finish();
    }

    private void FlushBlock()
    {
        ReadOnlySpan<byte> block = _pending.AsSpan(0, _pendingLength);
        if (block.ContainsAnyExcept((byte)0))
        {
            Span<byte> offset = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(offset, _position);
            _hash.AppendData(offset);
            _hash.AppendData(block);
        }
        _position += _pendingLength;
        _pendingLength = 0;
    }

    private static long Seek(int fd, long offset, int whence, long length, string path)
    {
        long result = LibC.Lseek(fd, offset, whence);
        if (result >= 0)
        {
            return result;
        }
        int errno = Marshal.GetLastPInvokeError();
        if (errno == Enxio)
        {
            return length; // no more data after offset (SEEK_DATA), or offset at the end
        }
        throw new IOException($"lseek {path}: errno {errno}", errno);
    }
}
