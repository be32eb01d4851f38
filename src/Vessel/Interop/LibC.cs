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
    public const int ORdwr = 0x2;
    public const int OCreat = 0x40;
    public const int OExcl = 0x80;
    public const int ONoctty = 0x100;
    public const int OAppend = 0x400;
    public const int ONonblock = 0x800;
    public const int ODirectory = 0x10000;
    public const int ONofollow = 0x20000;
    public const int OCloexec = 0x80000;
    public const int OPath = 0x200000;

    public const int AtFdCwd = -100;
    public const int AtSymlinkNoFollow = 0x100;
    public const int AtRemoveDir = 0x200;
    public const int AtEmptyPath = 0x1000;

    public const int Eperm = 1;
    public const int Enoent = 2;
    public const int Eintr = 4;
    public const int Enxio = 6;
    public const int Eagain = 11;
    public const int Eacces = 13;
    public const int Ebusy = 16;
    public const int Eexist = 17;
    public const int Einval = 22;
    public const int Enosys = 38;
    public const int Eopnotsupp = 95;

    public const short PollIn = 0x001;
    public const short PollOut = 0x004;
    public const short PollErr = 0x008;
    public const short PollHup = 0x010;

    // lseek(2) whence; preadv2(2) flags
    public const int SeekData = 3;
    public const int SeekHole = 4;
    public const int RwfNowait = 0x08;

    // send(2) and recv(2) flags; MSG_NOSIGNAL makes a vanished peer EPIPE, not SIGPIPE
    public const int MsgDontwait = 0x40;
    public const int MsgNosignal = 0x4000;

    // fallocate(2) modes
    public const int FallocFlKeepSize = 0x01;
    public const int FallocFlPunchHole = 0x02;

    // mount(2) flags (linux/mount.h)
    public const ulong MsRdonly = 0x1;
    public const ulong MsNosuid = 0x2;
    public const ulong MsNodev = 0x4;
    public const ulong MsNoexec = 0x8;
    public const ulong MsRemount = 0x20;
    public const ulong MsBind = 0x1000;
    public const ulong MsRec = 0x4000;
    public const ulong MsPrivate = 0x40000;

    // statx(2) (linux/stat.h): mask bits, and where fields lie in struct statx (one layout on every architecture)
    public const uint StatxType = 0x1;
    public const uint StatxMtime = 0x40;
    public const uint StatxCtime = 0x80;
    public const uint StatxIno = 0x100;
    public const uint StatxSize = 0x200;
    public const uint StatxBlocks = 0x400;
    public const uint StatxBasicStats = 0x7ff;
    public const int StatxBufferSize = 256;
    public const int StatxModeAt = 28; // __u16 stx_mode; its S_IFMT bits are the file type
    public const int StatxInoAt = 32;
    public const int StatxSizeAt = 40;
    public const int StatxBlocksAt = 48; // __u64 stx_blocks, in 512-byte units
    public const int StatxCtimeAt = 96;
    public const int StatxMtimeAt = 112;
    public const int StatxDevMajorAt = 136;
    public const int StatxDevMinorAt = 140;

    // S_IFMT and the file types in it (sys/stat.h), as statx reports stx_mode
    public const int SIfMt = 0xF000;
    public const int SIfSock = 0xC000;
    public const int SIfLnk = 0xA000;
    public const int SIfReg = 0x8000;
    public const int SIfBlk = 0x6000;
    public const int SIfDir = 0x4000;
    public const int SIfChr = 0x2000;
    public const int SIfIfo = 0x1000;

    /// <summary>cachestat(2)'s number, the same on x86-64 and arm64 (Linux 6.5+).</summary>
    public const long SysCachestat = 451;

    public const int EfdNonblock = 0x800;
    public const int EfdCloexec = 0x80000;

    public const int SyslogActionReadAll = 3;
    public const int SyslogActionSizeBuffer = 10;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    /// <summary>open(2) with the mode a new file gets (<see cref="OCreat"/>).</summary>
    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, int mode);

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
    public static partial int Mount(string? source, string target, string? fileSystemType, ulong flags, string? data);

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
