using System.Runtime.InteropServices;

namespace Vessel.Agent;

/// <summary>
/// The Linux calls and constants only the agent needs (x86-64 numbers): namespaces, ptys,
/// openat2, credentials. The flags, errnos and calls Vessel shares come from <see cref="LibC"/>,
/// compiled in here too (Vessel.Agent.csproj).
/// </summary>
internal static partial class Native
{
    public const ulong ResolveNoMagicLinks = 0x02;
    public const ulong ResolveInRoot = 0x10;

    public const int CloneFs = 0x200;
    public const int CloneNewNs = 0x20000;
    public const int CloneNewUts = 0x04000000;
    public const int CloneNewIpc = 0x08000000;
    public const int CloneNewPid = 0x20000000;

    public const nuint TiocGetPtyNumber = 0x80045430; // TIOCGPTN
    public const nuint TiocSetPtyLock = 0x40045431; // TIOCSPTLCK
    public const nuint TiocSetWindowSize = 0x5414; // TIOCSWINSZ
    public const nuint TiocSetControllingTty = 0x540E; // TIOCSCTTY
    public const int FcntlDupCloseOnExec = 1030; // F_DUPFD_CLOEXEC

    private const long SysSetgroups = 116;
    private const long SysSetresuid = 117;
    private const long SysSetresgid = 119;
    private const long SysGetdents64 = 217;
    private const long SysOpenat2 = 437;
    private const long SysMknodat = 259;

    [LibraryImport("libc", EntryPoint = "openat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int OpenAt(int dirFd, string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "unshare", SetLastError = true)]
    public static partial int Unshare(int flags);

    [LibraryImport("libc", EntryPoint = "chroot", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chroot(string path);

    [LibraryImport("libc", EntryPoint = "chdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chdir(string path);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "mkdirat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MkdirAt(int dirFd, string path, int mode);

    [LibraryImport("libc", EntryPoint = "unlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int UnlinkAt(int dirFd, string path, int flags);

    [LibraryImport("libc", EntryPoint = "renameat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int RenameAt(int oldDirFd, string oldPath, int newDirFd, string newPath);

    [LibraryImport("libc", EntryPoint = "fstatat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial int FstatAt(int dirFd, string path, byte* statBuffer, int flags);

    [LibraryImport("libc", EntryPoint = "readlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial nint ReadlinkAt(int dirFd, string path, byte* buffer, nint size);

    [LibraryImport("libc", EntryPoint = "fchmod", SetLastError = true)]
    public static partial int Fchmod(int fd, int mode);

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    public static partial int Setns(int fd, int nsType);

    [LibraryImport("libc", EntryPoint = "sethostname", SetLastError = true)]
    public static unsafe partial int Sethostname(byte* name, nint length);

    [LibraryImport("libc", EntryPoint = "dup2", SetLastError = true)]
    public static partial int Dup2(int oldFd, int newFd);

    [LibraryImport("libc", EntryPoint = "execve", SetLastError = true)]
    public static unsafe partial int Execve(byte* path, byte** argv, byte** envp);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static unsafe partial int Ioctl(int fd, nuint request, void* argument);

    [LibraryImport("libc", EntryPoint = "setsid", SetLastError = true)]
    public static partial int Setsid();

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "sync")]
    public static partial void Sync();

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, long a1, long a2, long a3, long a4);

    public static int LastError => Marshal.GetLastPInvokeError();

    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    /// <summary>openat2(2) confined to <paramref name="rootFd"/>: ".." and symlinks cannot leave it.</summary>
    public static unsafe int OpenInRoot(int rootFd, string path, int flags, int mode)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        ulong* how = stackalloc ulong[3];
        how[0] = (ulong)(uint)flags;
        how[1] = (ulong)(uint)mode;
        how[2] = ResolveInRoot | ResolveNoMagicLinks;
        fixed (byte* p = bytes)
        {
            return (int)Syscall(SysOpenat2, rootFd, (long)p, (long)how, 24);
        }
    }

    /// <summary>mknodat(2) relative to the working directory; the kernel's dev_t encoding (new_encode_dev) for the given major and minor.</summary>
    public static unsafe int Mknod(string path, int mode, uint major, uint minor)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        long dev = (minor & 0xff) | (major << 8) | ((long)(minor & ~0xffu) << 12);
        fixed (byte* p = bytes)
        {
            return (int)Syscall(SysMknodat, LibC.AtFdCwd, (long)p, mode, dev);
        }
    }

    public static unsafe long Getdents64(int fd, byte* buffer, int size) => Syscall(SysGetdents64, fd, (long)buffer, size, 0);

    /// <summary>
    /// Sets the calling thread's credentials only: the raw syscalls, unlike glibc's wrappers,
    /// do not broadcast to the other threads. A thread used for this never runs anything else.
    /// </summary>
    public static unsafe void SetThreadCredentials(uint uid, uint gid, uint[] groups)
    {
        fixed (uint* g = groups)
        {
            Check(Syscall(SysSetgroups, groups.Length, (long)g, 0, 0), "setgroups");
        }
        Check(Syscall(SysSetresgid, gid, gid, gid, 0), "setresgid");
        Check(Syscall(SysSetresuid, uid, uid, uid, 0), "setresuid");
    }

    [LibraryImport("libc", EntryPoint = "clock_settime", SetLastError = true)]
    private static unsafe partial int ClockSettime(int clock, long* timespec);

    /// <summary>clock_settime(CLOCK_REALTIME) to <paramref name="unixNanoseconds"/>.</summary>
    public static unsafe void SetRealtimeClock(long unixNanoseconds)
    {
        const int ClockRealtime = 0;
        long* ts = stackalloc long[2];
        ts[0] = Math.DivRem(unixNanoseconds, 1_000_000_000L, out long nanoseconds);
        ts[1] = nanoseconds;
        Check(ClockSettime(ClockRealtime, ts), "clock_settime");
    }

    public static void Check(long result, string what)
    {
        if (result < 0)
        {
            int errno = LastError;
            throw new AgentErrorException(errno, $"{what}: {Describe(errno)}");
        }
    }
}

/// <summary>A failure to report to the host as an Error message (errno + text).</summary>
internal sealed class AgentErrorException : Exception
{
    public AgentErrorException(int code, string message)
        : base(message)
    {
        Code = code;
    }

    public int Code { get; }
}
