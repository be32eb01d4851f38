using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Vessel.Containerd;

/// <summary>The file type of a path without following a final symlink (statx(2), whose layout is the same on every architecture).</summary>
internal static partial class UnixFile
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const int StatxSize = 256; // struct statx is 256 bytes
    private const int StatxModeOffset = 28; // __u16 stx_mode
    private const int SIfMt = 0xF000;

    public const int RegularFile = 0x8000;
    public const int Directory = 0x4000;

    /// <summary>The S_IFMT bits of <paramref name="path"/> (S_IFREG 0x8000, S_IFDIR 0x4000, S_IFLNK 0xA000...), or null if it does not exist.</summary>
    public static int? TypeOf(string path)
    {
        Span<byte> buffer = stackalloc byte[StatxSize];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType, ref MemoryMarshal.GetReference(buffer)) != 0)
        {
            return null;
        }
        return BinaryPrimitives.ReadUInt16LittleEndian(buffer[StatxModeOffset..]) & SIfMt;
    }

    public static bool IsRegularFile(string path) => TypeOf(path) == RegularFile;

    /// <summary>The S_IFMT bits of what <paramref name="path"/> leads to, symlinks followed, or null if nothing.</summary>
    public static int? TypeOfFollowingLinks(string path)
    {
        Span<byte> buffer = stackalloc byte[StatxSize];
        if (Statx(AtFdCwd, path, 0, StatxType, ref MemoryMarshal.GetReference(buffer)) != 0)
        {
            return null;
        }
        return BinaryPrimitives.ReadUInt16LittleEndian(buffer[StatxModeOffset..]) & SIfMt;
    }

    /// <summary>"a directory", "a character device"...: an S_IFMT value in words, for messages.</summary>
    public static string Describe(int type) => type switch
    {
        RegularFile => "a regular file",
        Directory => "a directory",
        0xA000 => "a symlink",
        0x2000 => "a character device",
        0x6000 => "a block device",
        0x1000 => "a FIFO",
        0xC000 => "a socket",
        _ => $"a special file (mode {Convert.ToString(type, 8)})",
    };

    /// <summary>Makes a rename or unlink in <paramref name="directory"/> durable (fsync on the directory).</summary>
    public static void FsyncDirectory(string directory)
    {
        int fd = Open(directory, ORdonly | OCloexec);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"open {directory}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        try
        {
            if (Fsync(fd) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw new IOException($"fsync {directory}: {Marshal.GetPInvokeErrorMessage(errno)}");
            }
        }
        finally
        {
            Close(fd);
        }
    }

    private const int ORdonly = 0;
    private const int OCloexec = 0x80000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirFd, string path, int flags, uint mask, ref byte buffer);
}
