using System.Collections;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Vessel.Agent;

/// <summary>
/// The first process of a pod's container (<c>vessel-agent --container-init ...</c>): the agent
/// starts it from a thread that unshared the mount, PID, UTS and IPC namespaces, so it is PID 1
/// of the container's PID namespace. Only a process inside that namespace can mount a /proc that
/// shows it, which is why this step is a process of its own. It mounts /proc, /sys, a minimal /dev
/// (a tmpfs with the default devices, pts and shm) and a /tmp tmpfs inside the container's overlay root, points its output at the
/// container's log, chroots, changes to the working directory and user, and execs the container's
/// command, which stays PID 1. Any failure is written to the log and exits 127.
/// </summary>
internal static class ContainerInit
{
    public const string Flag = "--container-init";

    /// <summary>The character devices of a container's /dev: name, major, minor (Linux devices.txt).</summary>
    private static readonly (string Name, uint Major, uint Minor)[] s_devices =
        [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

    /// <summary>The links of a container's /dev.</summary>
    private static readonly (string Name, string Target)[] s_links =
        [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")];

    /// <summary>Arguments: ROOT LOG CWD UID GID GROUPS(comma-separated, may be empty) -- COMMAND...; the environment is the container's.</summary>
    public static IReadOnlyList<string> Arguments(string root, string log, string cwd, UserIds ids, IReadOnlyList<string> command)
        => StepArguments(Flag, root, log, cwd, ids, command);

    /// <summary>The command line of an agent step that ends in <see cref="ChrootAndExec"/>: FLAG FIRST SECOND CWD UID GID GROUPS -- COMMAND...</summary>
    public static IReadOnlyList<string> StepArguments(string flag, string first, string second, string cwd, UserIds ids, IReadOnlyList<string> command)
    {
        var args = new List<string>
        {
            flag, first, second, cwd,
            ids.Uid.ToString(CultureInfo.InvariantCulture),
            ids.Gid.ToString(CultureInfo.InvariantCulture),
            string.Join(',', ids.Groups.Select(g => g.ToString(CultureInfo.InvariantCulture))),
            "--",
        };
        args.AddRange(command);
        return args;
    }

    public static int Run(string[] args)
    {
        if (args.Length < 9 || args[7] != "--")
        {
            Console.Error.WriteLine("vessel-agent: usage: --container-init ROOT LOG CWD UID GID GROUPS -- COMMAND...");
            return 2;
        }
        string root = args[1];
        try
        {
            RedirectOutput(args[2]);
            MountApi(root);
            ChrootAndExec(root, args[3], args[4], args[5], args[6], args[8..]);
            return 127; // not reached: Exec throws when execve returns
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"vessel-container-init: {e.Message}");
            return 127;
        }
    }

    /// <summary>
    /// Chroots to <paramref name="root"/>, changes to <paramref name="cwd"/> and to the user (decimal
    /// ids, groups comma-separated), and execs <paramref name="command"/> found on the environment's
    /// PATH inside the root. Returns only by throwing.
    /// </summary>
    public static void ChrootAndExec(string root, string cwd, string uidText, string gidText, string groupsText, string[] command)
    {
        Native.Check(Native.Chroot(root), "chroot " + root);
        cwd = cwd.Length == 0 ? "/" : cwd;
        if (Native.Chdir(cwd) < 0)
        {
            int errno = Native.LastError;
            throw new AgentErrorException(errno, $"working directory {cwd}: {Native.Describe(errno)}");
        }
        uint uid = uint.Parse(uidText, CultureInfo.InvariantCulture);
        uint gid = uint.Parse(gidText, CultureInfo.InvariantCulture);
        uint[] groups = groupsText.Length == 0 ? [] : groupsText.Split(',').Select(g => uint.Parse(g, CultureInfo.InvariantCulture)).ToArray();
        if (uid != 0 || gid != 0 || groups.Length > 0)
        {
            Native.SetThreadCredentials(uid, gid, groups);
        }
        var env = new List<string>();
        string path = AgentProcess.DefaultPath;
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            env.Add($"{e.Key}={e.Value}");
            if ((string)e.Key == "PATH")
            {
                path = (string)e.Value!;
            }
        }
        string exe = AgentProcess.ResolveExecutable(command[0], path);
        Exec(exe, command, env);
    }

    private static void RedirectOutput(string log)
    {
        int fd = LibC.Open(log, LibC.OWronly | LibC.OCreat | LibC.OAppend | LibC.OCloexec, 0x1A4);
        Native.Check(fd, "open " + log);
        int devNull = LibC.Open("/dev/null", LibC.ORdonly | LibC.OCloexec, 0);
        Native.Check(devNull, "open /dev/null");
        Native.Check(Native.Dup2(devNull, 0), "dup2 stdin");
        Native.Check(Native.Dup2(fd, 1), "dup2 stdout");
        Native.Check(Native.Dup2(fd, 2), "dup2 stderr");
    }

    /// <summary>The kernel's API filesystems inside the container's root, as this PID namespace sees them.</summary>
    private static void MountApi(string root)
    {
        // Nothing mounted here may propagate back to the VM's namespace.
        Native.Check(LibC.Mount(null, "/", null, LibC.MsRec | LibC.MsPrivate, null), "make mounts private");
        const ulong Safe = LibC.MsNosuid | LibC.MsNodev | LibC.MsNoexec;
        MountAt("proc", root + "/proc", "proc", Safe, null);
        MountAt("sysfs", root + "/sys", "sysfs", Safe | LibC.MsRdonly, null);
        MountMinimalDev(root + "/dev");
        MountAt("devpts", root + "/dev/pts", "devpts", LibC.MsNosuid | LibC.MsNoexec, "newinstance,ptmxmode=0666,mode=0620");
        MountAt("shm", root + "/dev/shm", "tmpfs", LibC.MsNosuid | LibC.MsNodev, "mode=1777");
        MountAt("tmpfs", root + "/tmp", "tmpfs", LibC.MsNosuid | LibC.MsNodev, "mode=1777");
    }

    /// <summary>
    /// A /dev of its own (a small tmpfs), not the VM's devtmpfs, which would show every image disk
    /// of the pod (and the kit disk) to every container: the character devices OCI runtimes give a
    /// container (runtime-spec config-linux.md, "Default Devices": null, zero, full, random,
    /// urandom, tty), the fd and stdio links, ptmx into the container's devpts, and pts/ and shm/.
    /// </summary>
    private static void MountMinimalDev(string dev)
    {
        MountAt("dev", dev, "tmpfs", LibC.MsNosuid | LibC.MsNoexec, "mode=755,size=64k,nr_inodes=64");
        foreach ((string name, uint major, uint minor) in s_devices)
        {
            string node = dev + "/" + name;
            Native.Check(Native.Mknod(node, LibC.SIfChr | 0x1B6, major, minor), "mknod " + node);
            if (OperatingSystem.IsLinux())
            {
                File.SetUnixFileMode(node, (UnixFileMode)0x1B6); // 0666 whatever the umask
            }
        }
        foreach ((string name, string target) in s_links)
        {
            File.CreateSymbolicLink(dev + "/" + name, target);
        }
        Directory.CreateDirectory(dev + "/pts");
        Directory.CreateDirectory(dev + "/shm");
    }

    private static void MountAt(string source, string target, string type, ulong flags, string? data)
    {
        Directory.CreateDirectory(target);
        Native.Check(LibC.Mount(source, target, type, flags, data), $"mount {type} on {target}");
    }

    private static unsafe void Exec(string exe, string[] argv, List<string> env)
    {
        var allocated = new List<IntPtr>();
        IntPtr Utf8(string s)
        {
            IntPtr p = Marshal.StringToCoTaskMemUTF8(s);
            allocated.Add(p);
            return p;
        }
        byte** args = (byte**)NativeMemory.AllocZeroed((nuint)(argv.Length + 1), (nuint)sizeof(byte*));
        byte** envp = (byte**)NativeMemory.AllocZeroed((nuint)(env.Count + 1), (nuint)sizeof(byte*));
        for (int i = 0; i < argv.Length; i++)
        {
            args[i] = (byte*)Utf8(argv[i]);
        }
        for (int i = 0; i < env.Count; i++)
        {
            envp[i] = (byte*)Utf8(env[i]);
        }
        Native.Execve((byte*)Utf8(exe), args, envp);
        int errno = Native.LastError;
        throw new AgentErrorException(errno, $"exec {exe}: {Native.Describe(errno)}");
    }

    /// <summary>sethostname(2) in the calling thread's UTS namespace.</summary>
    public static unsafe void SetHostname(string name)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(name);
        fixed (byte* p = bytes)
        {
            Native.Check(Native.Sethostname(p, bytes.Length), "sethostname " + name);
        }
    }
}
