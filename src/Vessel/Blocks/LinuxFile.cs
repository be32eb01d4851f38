using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Vessel.Blocks;

/// <summary>
/// The few Linux file calls .NET does not expose: directory fsync (for atomic publish),
/// SEEK_DATA/SEEK_HOLE (to skip holes of sparse images) and hole punching (trim).
/// </summary>
internal static partial class LinuxFile
{
    private const int ODirectory = 0x10000; // O_DIRECTORY on x86-64 and arm64
    private const int SeekData = 3;
    private const int SeekHole = 4;
    private const int FallocFlKeepSize = 0x01;
    private const int FallocFlPunchHole = 0x02;
    private const int Enxio = 6; // lseek(SEEK_DATA) past the last data: no more data

    /// <summary>fsyncs a directory so that a rename inside it survives a crash.</summary>
    public static void FsyncDirectory(string path)
    {
        int fd = Open(path, ODirectory);
        if (fd < 0)
        {
            throw new IOException($"Cannot open directory '{path}' to fsync it (errno {Marshal.GetLastPInvokeError()}).");
        }
        try
        {
            if (Fsync(fd) != 0)
            {
                throw new IOException($"fsync of directory '{path}' failed (errno {Marshal.GetLastPInvokeError()}).");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>The next offset at or after <paramref name="offset"/> that holds data, or -1 when none does.</summary>
    public static long NextData(SafeFileHandle handle, long offset) => SeekOrEnd(handle, offset, SeekData);

    /// <summary>The next hole at or after <paramref name="offset"/> (the end of the file counts as a hole).</summary>
    public static long NextHole(SafeFileHandle handle, long offset) => SeekOrEnd(handle, offset, SeekHole);

    /// <summary>Deallocates a range, keeping the file size; returns false where the filesystem cannot punch holes.</summary>
    public static bool TryPunchHole(SafeFileHandle handle, long offset, long length)
    {
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            return Fallocate((int)handle.DangerousGetHandle(), FallocFlPunchHole | FallocFlKeepSize, offset, length) == 0;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    private static long SeekOrEnd(SafeFileHandle handle, long offset, int whence)
    {
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            long result = Lseek((int)handle.DangerousGetHandle(), offset, whence);
            if (result >= 0)
            {
                return result;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Enxio)
            {
                return -1;
            }
            // Filesystems without SEEK_DATA support: treat everything as data.
            return whence == SeekData ? offset : RandomAccess.GetLength(handle);
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    private static partial long Lseek(int fd, long offset, int whence);

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int Fallocate(int fd, int mode, long offset, long length);
}
