using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Vessel.Interop;

/// <summary>What .NET does not do with a path or file: its type without following a final symlink (statx(2)), a directory fsync, a punched hole.</summary>
internal static class UnixFile
{
    public const int TypeRegular = 0x8000;
    public const int TypeDirectory = 0x4000;
    public const int TypeSymlink = 0xA000;
    public const int TypeSocket = 0xC000;

    private const int FallocFlKeepSize = 0x01;
    private const int FallocFlPunchHole = 0x02;
    private const uint StatxType = 0x1;
    private const int StatxSize = 256; // struct statx is 256 bytes
    private const int StatxModeOffset = 28; // __u16 stx_mode
    private const int SIfMt = 0xF000;

    /// <summary>The S_IFMT bits of <paramref name="path"/> (S_IFREG 0x8000, S_IFDIR 0x4000, S_IFLNK 0xA000...), or null if it does not exist.</summary>
    public static unsafe int? TypeOf(string path)
    {
        byte* buffer = stackalloc byte[StatxSize];
        if (LibC.Statx(LibC.AtFdCwd, path, LibC.AtSymlinkNoFollow, StatxType, buffer) != 0)
        {
            return null;
        }
        return BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(buffer + StatxModeOffset, 2)) & SIfMt;
    }

    public static bool IsRegularFile(string path) => TypeOf(path) == TypeRegular;

    /// <summary>True when <paramref name="path"/> itself (not a link target) is a unix socket.</summary>
    public static bool IsSocket(string path) => TypeOf(path) == TypeSocket;

    /// <summary>Makes a rename or unlink in <paramref name="directory"/> durable (fsync on the directory).</summary>
    public static void FsyncDirectory(string directory)
    {
        int fd = LibC.Open(directory, LibC.ORdonly | LibC.ODirectory | LibC.OCloexec);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"Cannot open directory '{directory}' to fsync it: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
        }
        try
        {
            if (LibC.Fsync(fd) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw new IOException($"fsync of directory '{directory}' failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
            }
        }
        finally
        {
            _ = LibC.Close(fd);
        }
    }

    /// <summary>Deallocates a range, keeping the file size; returns false where the filesystem cannot punch holes.</summary>
    public static bool TryPunchHole(SafeFileHandle handle, long offset, long length)
    {
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            return LibC.Fallocate((int)handle.DangerousGetHandle(), FallocFlPunchHole | FallocFlKeepSize, offset, length) == 0;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }
}
