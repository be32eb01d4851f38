using System.Buffers.Binary;
using System.ComponentModel;
using System.Runtime.InteropServices;
using Vessel.Ext4;
using Vessel.Interop;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>What <c>lstat(2)</c> says about one path (the fields the read-back check compares).</summary>
internal readonly record struct StatInfo(
    ulong Device,
    ulong Inode,
    ulong LinkCount,
    uint Mode,
    uint Uid,
    uint Gid,
    ulong RawDevice,
    long Size,
    long Blocks,
    long MtimeSeconds)
{
    /// <summary>The file type of st_mode's S_IFMT bits (sys/stat.h), or null for a value Linux does not define.</summary>
    public FsKind? Kind => ((int)Mode & LibC.SIfMt) switch
    {
        LibC.SIfReg => FsKind.RegularFile,
        LibC.SIfDir => FsKind.Directory,
        LibC.SIfLnk => FsKind.Symlink,
        LibC.SIfChr => FsKind.CharacterDevice,
        LibC.SIfBlk => FsKind.BlockDevice,
        LibC.SIfIfo => FsKind.Fifo,
        LibC.SIfSock => FsKind.Socket,
        _ => null,
    };

    public uint Permissions => Mode & 0xFFF; // rwx for all three plus setuid, setgid, sticky

    /// <summary>glibc's gnu_dev_major/gnu_dev_minor encoding of a dev_t.</summary>
    public uint Major => (uint)(((RawDevice >> 8) & 0xFFF) | ((RawDevice >> 32) & ~0xFFFUL));

    public uint Minor => (uint)((RawDevice & 0xFF) | ((RawDevice >> 12) & ~0xFFUL));
}

/// <summary>
/// The libc calls the checker needs and .NET does not expose: lstat with uid/gid/inode/rdev,
/// and the l*xattr family (which do not follow symlinks). x86_64 glibc only, which is what
/// Vessel's hosts run.
/// </summary>
internal static partial class Native
{
    private const string Library = "libc.so.6";
    private const int StatBufferSize = 144; // sizeof(struct stat) on x86_64
    private const int Erange = 34;
    private const int Enodata = 61;

    public static StatInfo LStat(string path)
    {
        EnsureX64();
        Span<byte> buffer = stackalloc byte[StatBufferSize];
        int rc;
        unsafe
        {
            fixed (byte* p = buffer)
            {
                rc = LStatNative(path, p);
            }
        }
        if (rc != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"lstat {path}: {new Win32Exception(errno).Message}", errno);
        }
        // x86_64 struct stat: st_dev 0, st_ino 8, st_nlink 16, st_mode 24, st_uid 28,
        // st_gid 32, st_rdev 40, st_size 48, st_blksize 56, st_blocks 64, st_atim 72,
        // st_mtim 88, st_ctim 104.
        return new StatInfo(
            BinaryPrimitives.ReadUInt64LittleEndian(buffer),
            BinaryPrimitives.ReadUInt64LittleEndian(buffer[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(buffer[16..]),
            BinaryPrimitives.ReadUInt32LittleEndian(buffer[24..]),
            BinaryPrimitives.ReadUInt32LittleEndian(buffer[28..]),
            BinaryPrimitives.ReadUInt32LittleEndian(buffer[32..]),
            BinaryPrimitives.ReadUInt64LittleEndian(buffer[40..]),
            BinaryPrimitives.ReadInt64LittleEndian(buffer[48..]),
            BinaryPrimitives.ReadInt64LittleEndian(buffer[64..]),
            BinaryPrimitives.ReadInt64LittleEndian(buffer[88..]));
    }

    /// <summary>All extended attributes of <paramref name="path"/> itself (not a symlink's target), by name.</summary>
    public static SortedDictionary<string, byte[]> ListXattrs(string path)
    {
        var result = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        byte[] names = QueryGrowing(size => ListXattrNative(path, size), $"llistxattr {path}");
        int start = 0;
        for (int i = 0; i < names.Length; i++)
        {
            if (names[i] == 0)
            {
                if (i > start)
                {
                    string name = Encoding.UTF8.GetString(names, start, i - start);
                    byte[] value = QueryGrowing(size => GetXattrNative(path, name, size), $"lgetxattr {path} {name}");
                    result[name] = value;
                }
                start = i + 1;
            }
        }
        return result;
    }

    /// <summary>Sets an extended attribute on <paramref name="path"/> itself (lsetxattr).</summary>
    public static void SetXattr(string path, string name, ReadOnlySpan<byte> value)
    {
        int rc;
        unsafe
        {
            fixed (byte* p = value)
            {
                rc = LibC.Lsetxattr(path, name, p, (nuint)value.Length, 0);
            }
        }
        if (rc != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"lsetxattr {path} {name}: {new Win32Exception(errno).Message}", errno);
        }
    }

    /// <summary>Changes the owner of <paramref name="path"/> itself (lchown).</summary>
    public static void LChown(string path, int uid, int gid)
    {
        if (LChownNative(path, uid, gid) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"lchown {path}: {new Win32Exception(errno).Message}", errno);
        }
    }

    /// <summary>Sets all twelve mode bits (chmod), setuid/setgid/sticky included.</summary>
    public static void Chmod(string path, int mode) => Check(ChmodNative(path, mode), "chmod", path);

    /// <summary>Adds <paramref name="newPath"/> as another name of <paramref name="existing"/> (link(2)).</summary>
    public static void Link(string existing, string newPath) => Check(LibC.Link(existing, newPath), "link", newPath);

    /// <summary>The twelve mode bits of <paramref name="path"/> itself.</summary>
    public static int GetPermissions(string path) => (int)LStat(path).Permissions;

    /// <summary>Sets atime and mtime of <paramref name="path"/> itself, also of a symlink (lutimes).</summary>
    public static void SetTimes(string path, long seconds)
    {
        Span<long> times = [seconds, 0, seconds, 0]; // struct timeval[2]: tv_sec, tv_usec
        unsafe
        {
            fixed (long* p = times)
            {
                Check(LUtimesNative(path, p), "lutimes", path);
            }
        }
    }

    private static void Check(int rc, string call, string path)
    {
        if (rc != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"{call} {path}: {new Win32Exception(errno).Message}", errno);
        }
    }

    private static void EnsureX64()
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64 || !OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("The read-back checker decodes x86_64 Linux struct stat.");
        }
    }

    /// <summary>Runs a size-query libc call (size 0 first, then a buffer), retrying on ERANGE races.</summary>
    private static byte[] QueryGrowing(Func<int, (long Rc, byte[] Data)> call, string what)
    {
        for (int attempt = 0; attempt < 5; attempt++)
        {
            (long size, _) = call(0);
            if (size < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Enodata)
                {
                    return [];
                }
                throw new IOException($"{what}: {new Win32Exception(errno).Message}", errno);
            }
            if (size == 0)
            {
                return [];
            }
            (long rc, byte[] data) = call((int)size);
            if (rc >= 0)
            {
                return data.AsSpan(0, (int)rc).ToArray();
            }
            if (Marshal.GetLastPInvokeError() != Erange)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw new IOException($"{what}: {new Win32Exception(errno).Message}", errno);
            }
        }
        throw new IOException($"{what}: the attribute kept changing size");
    }

    private static unsafe (long, byte[]) ListXattrNative(string path, int size)
    {
        byte[] data = new byte[size];
        fixed (byte* p = data)
        {
            return ((long)LListXattr(path, size == 0 ? null : p, (nuint)size), data);
        }
    }

    private static unsafe (long, byte[]) GetXattrNative(string path, string name, int size)
    {
        byte[] data = new byte[size];
        fixed (byte* p = data)
        {
            return ((long)LGetXattr(path, name, size == 0 ? null : p, (nuint)size), data);
        }
    }

    [LibraryImport(Library, EntryPoint = "lstat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int LStatNative(string path, byte* buffer);

    [LibraryImport(Library, EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int LChownNative(string path, int uid, int gid);

    [LibraryImport(Library, EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ChmodNative(string path, int mode);

    [LibraryImport(Library, EntryPoint = "lutimes", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int LUtimesNative(string path, long* times);

    [LibraryImport(Library, EntryPoint = "llistxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial nint LListXattr(string path, byte* list, nuint size);

    [LibraryImport(Library, EntryPoint = "lgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial nint LGetXattr(string path, string name, byte* value, nuint size);
}
