using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Vessel.Interop;

/// <summary>What .NET does not do with a path or file: its type without following a final symlink (statx(2)), a directory fsync, a punched hole.</summary>
internal static class UnixFile
{
    /// <summary>The S_IFMT bits of <paramref name="path"/> (S_IFREG 0x8000, S_IFDIR 0x4000, S_IFLNK 0xA000...), or null if it does not exist.</summary>
    public static int? TypeOf(string path) => ModeType(path, LibC.AtSymlinkNoFollow);

    public static bool IsRegularFile(string path) => TypeOf(path) == LibC.SIfReg;

    /// <summary>
    /// Bytes on disk of <paramref name="path"/> itself (a final symlink not followed): st_blocks
    /// × 512, so a sparse file counts what it holds, not its length; 0 if it does not exist.
    /// </summary>
    public static unsafe long AllocatedBytes(string path)
    {
        byte* buffer = stackalloc byte[LibC.StatxBufferSize];
        if (LibC.Statx(LibC.AtFdCwd, path, LibC.AtSymlinkNoFollow, LibC.StatxBlocks, buffer) != 0)
        {
            return 0;
        }
        return (long)BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(buffer + LibC.StatxBlocksAt, 8)) * 512;
    }

    /// <summary>
    /// <see cref="AllocatedBytes"/> of a file, or of a directory and everything below it (symlinks
    /// counted, never followed; entries that vanish meanwhile count 0): what removing it frees.
    /// </summary>
    public static long DiskUsage(string path)
    {
        long total = AllocatedBytes(path);
        if (TypeOf(path) != LibC.SIfDir)
        {
            return total;
        }
        try
        {
            foreach (string entry in Directory.EnumerateFileSystemEntries(path))
            {
                total += TypeOf(entry) == LibC.SIfDir ? DiskUsage(entry) : AllocatedBytes(entry);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Removed while we walked it: what is left is counted.
        }
        return total;
    }

    /// <summary>The S_IFMT bits of what <paramref name="path"/> leads to, symlinks followed, or null if nothing.</summary>
    public static int? TypeOfFollowingLinks(string path) => ModeType(path, 0);

    /// <summary>"a directory", "a character device"...: an S_IFMT value in words, for messages.</summary>
    public static string Describe(int type) => type switch
    {
        LibC.SIfReg => "a regular file",
        LibC.SIfDir => "a directory",
        LibC.SIfLnk => "a symlink",
        LibC.SIfChr => "a character device",
        LibC.SIfBlk => "a block device",
        LibC.SIfIfo => "a FIFO",
        LibC.SIfSock => "a socket",
        _ => $"a special file (mode {Convert.ToString(type, 8)})",
    };

    /// <summary>True when <paramref name="path"/> itself (not a link target) is a unix socket.</summary>
    public static bool IsSocket(string path) => TypeOf(path) == LibC.SIfSock;

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
        using var held = new HeldDescriptor(handle);
        return LibC.Fallocate(held.Fd, LibC.FallocFlPunchHole | LibC.FallocFlKeepSize, offset, length) == 0;
    }

    /// <summary>The S_IFMT bits of stx_mode for <paramref name="path"/>, statx(2) given <paramref name="flags"/>, or null if nothing is there.</summary>
    private static unsafe int? ModeType(string path, int flags)
    {
        byte* buffer = stackalloc byte[LibC.StatxBufferSize];
        if (LibC.Statx(LibC.AtFdCwd, path, flags, LibC.StatxType, buffer) != 0)
        {
            return null;
        }
        return BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(buffer + LibC.StatxModeAt, 2)) & LibC.SIfMt;
    }
}
