using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Vessel.Interop;

namespace Vessel.Blocks;

/// <summary>
/// The few Linux file calls .NET does not expose (declared in <see cref="LibC"/>):
/// SEEK_DATA/SEEK_HOLE (to skip holes of sparse images), reads that
/// never wait for the disk (preadv2 with RWF_NOWAIT), page-cache residency (cachestat) and
/// sendfile, which hands page-cache pages to a socket without copying them.
/// </summary>
internal static class LinuxFile
{
    private const int PageSize = 4096; // cachestat counts pages; only "all of them" matters here
    private static volatile bool s_noCachestat;

    /// <summary>The next offset at or after <paramref name="offset"/> that holds data, or -1 when none does.</summary>
    public static long NextData(SafeFileHandle handle, long offset) => SeekOrEnd(handle, offset, LibC.SeekData);

    /// <summary>The next hole at or after <paramref name="offset"/> (the end of the file counts as a hole).</summary>
    public static long NextHole(SafeFileHandle handle, long offset) => SeekOrEnd(handle, offset, LibC.SeekHole);

    /// <summary>
    /// Fills <paramref name="destination"/> from <paramref name="offset"/> only as far as the page
    /// cache holds it: preadv2 with RWF_NOWAIT never waits for the disk. Returns the bytes read
    /// (less than asked where the cache ran out or the file ended), or -1 where the kernel or
    /// filesystem does not support RWF_NOWAIT; other errors throw like a normal read would.
    /// </summary>
    public static unsafe int ReadCached(SafeFileHandle handle, Span<byte> destination, long offset)
    {
        using var held = new HeldDescriptor(handle);
        int fd = held.Fd;
        int total = 0;
        fixed (byte* start = destination)
        {
            while (total < destination.Length)
            {
                var iov = new LibC.IoVec { Base = start + total, Length = (nuint)(destination.Length - total) };
                long n = LibC.Preadv2(fd, &iov, 1, offset + total, LibC.RwfNowait);
                if (n > 0)
                {
                    total += (int)n;
                    continue;
                }
                if (n == 0)
                {
                    return total; // end of file
                }
                int errno = Marshal.GetLastPInvokeError();
                if (errno == LibC.Eintr)
                {
                    continue;
                }
                if (errno == LibC.Eagain)
                {
                    return total;
                }
                if (total == 0 && IsNoWaitUnsupported(errno))
                {
                    return -1;
                }
                throw new IOException($"preadv2 at {offset + total} failed (errno {errno}).", errno);
            }
        }
        return total;
    }

    /// <summary>
    /// True when every page of <c>[offset, offset + length)</c> is in the page cache right now
    /// (cachestat, Linux 6.5+); false when some is not, or the kernel cannot say.
    /// </summary>
    public static unsafe bool IsCached(SafeFileHandle handle, long offset, int length)
    {
        if (s_noCachestat || length <= 0)
        {
            return false;
        }
        using var held = new HeldDescriptor(handle);
        long first = offset / PageSize;
        long pages = ((offset + length + PageSize - 1) / PageSize) - first;
        LibC.CachestatRange range = new() { Offset = (ulong)(first * PageSize), Length = (ulong)(pages * PageSize) };
        LibC.Cachestat stat = default;
        if (LibC.SyscallCachestat(LibC.SysCachestat, held.Fd, &range, &stat, 0) != 0)
        {
            s_noCachestat = Marshal.GetLastPInvokeError() is LibC.Enosys or LibC.Eperm; // EPERM from a seccomp filter
            return false;
        }
        return stat.NrCache >= (ulong)pages;
    }

    /// <summary>
    /// sendfile(2) from a file to a non-blocking socket: returns the bytes sent, which is fewer
    /// than <paramref name="count"/> when the socket's buffer filled (the caller sends the rest
    /// another way), or -1 when this socket or file cannot be used with sendfile at all.
    /// Other errors (the peer went away) throw <see cref="IOException"/>.
    /// </summary>
    public static unsafe int SendFile(SafeHandle socket, SafeFileHandle file, long offset, int count)
    {
        using var outFd = new HeldDescriptor(socket);
        using var inFd = new HeldDescriptor(file);
        int total = 0;
        while (total < count)
        {
            long at = offset + total;
            long n = LibC.Sendfile(outFd.Fd, inFd.Fd, &at, (nuint)(count - total));
            if (n > 0)
            {
                total += (int)n;
                continue;
            }
            if (n == 0)
            {
                return total; // the file ended early: the caller's copy path reports it
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == LibC.Eintr)
            {
                continue;
            }
            if (errno == LibC.Eagain)
            {
                return total;
            }
            if (total == 0 && errno is LibC.Einval or LibC.Enosys or LibC.Eopnotsupp)
            {
                return -1;
            }
            throw new IOException($"sendfile failed (errno {errno}).", errno);
        }
        return total;
    }

    /// <summary>The identity of the file behind <paramref name="handle"/> (statx), or null where the kernel cannot say.</summary>
    public static unsafe FileIdentity? TryGetIdentity(SafeFileHandle handle)
    {
        // struct statx (linux/stat.h) has one layout on every architecture, unlike struct stat.
        const uint Needed = LibC.StatxIno | LibC.StatxSize | LibC.StatxCtime | LibC.StatxMtime;
        using var held = new HeldDescriptor(handle);
        byte* buffer = stackalloc byte[LibC.StatxBufferSize];
        if (LibC.Statx(held.Fd, "", LibC.AtEmptyPath, LibC.StatxBasicStats, buffer) != 0)
        {
            return null;
        }
        var s = new ReadOnlySpan<byte>(buffer, LibC.StatxBufferSize);
        if ((BinaryPrimitives.ReadUInt32LittleEndian(s) & Needed) != Needed)
        {
            return null;
        }
        return new FileIdentity(
            BinaryPrimitives.ReadUInt32LittleEndian(s[LibC.StatxDevMajorAt..]),
            BinaryPrimitives.ReadUInt32LittleEndian(s[LibC.StatxDevMinorAt..]),
            BinaryPrimitives.ReadUInt64LittleEndian(s[LibC.StatxInoAt..]),
            BinaryPrimitives.ReadInt64LittleEndian(s[LibC.StatxSizeAt..]),
            BinaryPrimitives.ReadInt64LittleEndian(s[LibC.StatxMtimeAt..]),
            BinaryPrimitives.ReadUInt32LittleEndian(s[(LibC.StatxMtimeAt + 8)..]),
            BinaryPrimitives.ReadInt64LittleEndian(s[LibC.StatxCtimeAt..]),
            BinaryPrimitives.ReadUInt32LittleEndian(s[(LibC.StatxCtimeAt + 8)..]));
    }

    // EOPNOTSUPP: a filesystem without nowait buffered reads; EINVAL: a kernel without the
    // flag; ENOSYS: no preadv2 at all (seccomp filters answer this too).
    private static bool IsNoWaitUnsupported(int errno) => errno is LibC.Eopnotsupp or LibC.Einval or LibC.Enosys;

    private static long SeekOrEnd(SafeFileHandle handle, long offset, int whence)
    {
        using var held = new HeldDescriptor(handle);
        long result = LibC.Lseek(held.Fd, offset, whence);
        if (result >= 0)
        {
            return result;
        }
        int errno = Marshal.GetLastPInvokeError();
        if (errno == LibC.Enxio)
        {
            return -1;
        }
        // Filesystems without SEEK_DATA support: treat everything as data.
        return whence == LibC.SeekData ? offset : RandomAccess.GetLength(handle);
    }
}
