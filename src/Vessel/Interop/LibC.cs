using System.Runtime.InteropServices;

namespace Vessel.Interop;

/// <summary>
/// Every libc function Vessel calls that .NET does not expose, each declared once (the guest
/// agent, a separate assembly, compiles this file too). Callers check the result and read errno with
/// <see cref="Marshal.GetLastPInvokeError"/>. Flag values are Linux's for x86-64 and arm64.
/// </summary>
internal static unsafe partial class LibC
{
    public const int ORdonly = 0;
    public const int OWronly = 0x1;
    public const int ONonblock = 0x800;
    public const int ODirectory = 0x10000;
    public const int OCloexec = 0x80000;

    public const int AtFdCwd = -100;
    public const int AtSymlinkNoFollow = 0x100;
    public const int AtEmptyPath = 0x1000;

    public const int Eperm = 1;
    public const int Eintr = 4;
    public const int Enxio = 6;
    public const int Eagain = 11;
    public const int Eopnotsupp = 95;

    public const short PollIn = 0x001;
    public const short PollErr = 0x008;
    public const short PollHup = 0x010;

    public const int EfdNonblock = 0x800;
    public const int EfdCloexec = 0x80000;

    public const int SyslogActionReadAll = 3;
    public const int SyslogActionSizeBuffer = 10;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint Geteuid();

    [LibraryImport("libc", EntryPoint = "getegid")]
    public static partial uint Getegid();

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    public static partial int Eventfd(uint initval, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    public static partial long Lseek(int fd, long offset, int whence);

    /// <summary>statx(2): struct statx is 256 bytes with the same layout on every architecture.</summary>
    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Statx(int dirFd, string path, int flags, uint mask, byte* buffer);

    /// <summary>link(2): a final symlink in <paramref name="oldPath"/> is not followed (Linux).</summary>
    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Link(string oldPath, string newPath);

    /// <summary>lsetxattr(2): sets an extended attribute of the path itself, a final symlink not followed.</summary>
    [LibraryImport("libc", EntryPoint = "lsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Lsetxattr(string path, string name, byte* value, nuint size, int flags);

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    public static partial int Fallocate(int fd, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "preadv2", SetLastError = true)]
    public static partial long Preadv2(int fd, IoVec* iov, int iovcnt, long offset, int flags);

    [LibraryImport("libc", EntryPoint = "sendfile", SetLastError = true)]
    public static partial long Sendfile(int outFd, int inFd, long* offset, nuint count);

    /// <summary>cachestat(2) through syscall(2): glibc 2.36 has no wrapper, and integer arguments travel in the same registers.</summary>
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    public static partial long SyscallCachestat(long number, int fd, CachestatRange* range, Cachestat* stat, uint flags);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    public static partial long Recv(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    public static partial long Send(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mount(string source, string target, string? fileSystemType, ulong flags, string? data);

    /// <summary>klogctl(3) (syslog(2)): the type SYSLOG_ACTION_READ_ALL copies the kernel log without consuming it.</summary>
    [LibraryImport("libc", EntryPoint = "klogctl", SetLastError = true)]
    public static partial int Klogctl(int type, byte* buffer, int length);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Umount2(string target, int flags);

    /// <summary>struct iovec (uio.h): a base pointer and a length.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    /// <summary>struct cachestat_range (linux/mman.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct CachestatRange
    {
        public ulong Offset;
        public ulong Length;
    }

    /// <summary>struct cachestat (linux/mman.h); only the first field is used.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Cachestat
    {
        public ulong NrCache;
        public ulong NrDirty;
        public ulong NrWriteback;
        public ulong NrEvicted;
        public ulong NrRecentlyEvicted;
    }

    /// <summary>struct pollfd (poll.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }
}
