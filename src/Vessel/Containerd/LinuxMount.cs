using System.Runtime.InteropServices;
using System.Text;
using Vessel.Interop;

namespace Vessel.Containerd;

/// <summary>
/// mount(2) and umount2(2) through libc, and the mount table (/proc/self/mountinfo). Only the
/// two mount types containerd's overlayfs and native snapshotters hand out for views are
/// supported: <c>bind</c> and <c>overlay</c>.
/// </summary>
internal static class LinuxMount
{
    // linux/mount.h
    public const ulong MsRdonly = 0x1;
    public const ulong MsNosuid = 0x2;
    public const ulong MsNodev = 0x4;
    public const ulong MsNoexec = 0x8;
    public const ulong MsRemount = 0x20;
    public const ulong MsBind = 0x1000;
    public const ulong MsRec = 0x4000;
    public const ulong MsPrivate = 0x40000;

    private const int Ebusy = 16;
    private const int Einval = 22;
    private const int Enoent = 2;

    /// <summary>
    /// Mounts a containerd mount read-only at <paramref name="target"/>, whatever its options
    /// say (a view is read-only by contract; this makes it so for the kernel too).
    /// </summary>
    public static void MountReadOnly(string type, string source, IEnumerable<string> options, string target)
    {
        (ulong flags, string data) = ParseOptions(options);
        flags |= MsRdonly | MsNosuid | MsNodev;
        switch (type)
        {
            case "bind":
                flags |= MsBind;
                Check(LibC.Mount(source, target, null, flags & (MsBind | MsRec), null), "mount --bind", source, target);
                // A bind mount ignores MS_RDONLY on creation: remount it read-only.
                Remount(target, flags, source);
                break;
            case "overlay":
                if (data.Contains("upperdir=", StringComparison.Ordinal))
                {
                    throw new VesselException(VesselErrorReason.Unsupported,
                        $"The view's overlay mount has an upperdir: it is not a read-only view ({data}).");
                }
                Check(LibC.Mount(source.Length > 0 ? source : "overlay", target, "overlay", flags & ~(MsBind | MsRec), data), "mount -t overlay", source, target);
                break;
            default:
                throw new VesselException(VesselErrorReason.Unsupported,
                    $"The snapshotter gave a '{type}' mount; Vessel mounts only 'bind' and 'overlay' views.");
        }
    }

    /// <summary>
    /// Mounts one of the rootfs mounts containerd passes a runtime in Create (a container's
    /// active snapshot) at <paramref name="target"/> as given, read-write unless its options say
    /// <c>ro</c>, as runc does: <c>overlay</c> (overlayfs snapshotter) or <c>bind</c> (native).
    /// </summary>
    public static void MountAsGiven(string type, string source, IEnumerable<string> options, string target)
    {
        (ulong flags, string data) = ParseOptions(options);
        switch (type)
        {
            case "bind":
                Check(LibC.Mount(source, target, null, MsBind | (flags & MsRec), null), "mount --bind", source, target);
                if ((flags & MsRdonly) != 0)
                {
                    Remount(target, flags, source);
                }
                break;
            case "overlay":
                Check(LibC.Mount(source.Length > 0 ? source : "overlay", target, "overlay", flags & ~(MsBind | MsRec), data), "mount -t overlay", source, target);
                break;
            default:
                throw new VesselException(VesselErrorReason.Unsupported,
                    $"The snapshotter gave a '{type}' rootfs mount; Vessel mounts only 'bind' and 'overlay'.");
        }
    }

    /// <summary>Bind-mounts one file read-only (nosuid, nodev, noexec) onto an existing file.</summary>
    public static void BindFileReadOnly(string source, string target)
    {
        Check(LibC.Mount(source, target, null, MsBind, null), "mount --bind", source, target);
        Remount(target, MsBind | MsRdonly | MsNosuid | MsNodev | MsNoexec, source);
    }

    /// <summary>
    /// Unmounts everything stacked on <paramref name="target"/> (not lazily: a busy mount
    /// stays and the call throws). Returns how many mounts it removed.
    /// </summary>
    public static int UnmountAll(string target)
    {
        int removed = 0;
        // Bounded: a mount point can hold a few stacked mounts, never hundreds.
        for (int i = 0; i < 64 && IsMountPoint(target); i++)
        {
            if (LibC.Umount2(target, 0) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno is Einval or Enoent)
                {
                    break;
                }
                throw new VesselException(errno == Ebusy ? VesselErrorReason.Conflict : VesselErrorReason.ToolFailed,
                    $"umount {target}: {Describe(errno)}{(errno == Ebusy ? " (a process still uses it; stop it and clean up again)" : string.Empty)}.");
            }
            removed++;
        }
        return removed;
    }

    /// <summary>True when some mount has <paramref name="path"/> as its mount point.</summary>
    public static bool IsMountPoint(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd('/');
        if (full.Length == 0)
        {
            full = "/";
        }
        return MountPoints().Contains(full);
    }

    /// <summary>The mount points in /proc/self/mountinfo at or under <paramref name="directory"/>.</summary>
    public static IReadOnlyList<string> MountsUnder(string directory)
    {
        string dir = Path.GetFullPath(directory).TrimEnd('/');
        return MountPoints().Where(m => m == dir || m.StartsWith(dir + "/", StringComparison.Ordinal)).ToList();
    }

    /// <summary>
    /// Splits fstab-style options into mount flags and the data string, as containerd's
    /// mount_linux.go does for the options it knows.
    /// </summary>
    public static (ulong Flags, string Data) ParseOptions(IEnumerable<string> options)
    {
        ulong flags = 0;
        var data = new List<string>();
        foreach (string o in options)
        {
            switch (o)
            {
                case "ro": flags |= MsRdonly; break;
                case "rw": flags &= ~MsRdonly; break;
                case "bind": flags |= MsBind; break;
                case "rbind": flags |= MsBind | MsRec; break;
                case "nosuid": flags |= MsNosuid; break;
                case "nodev": flags |= MsNodev; break;
                case "noexec": flags |= MsNoexec; break;
                case "suid" or "dev" or "exec" or "defaults": break;
                default: data.Add(o); break;
            }
        }
        return (flags, string.Join(',', data));
    }

    /// <summary>Decodes a mountinfo path field (spaces, tabs, newlines and backslashes are octal escapes).</summary>
    public static string UnescapeMountInfo(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal))
        {
            return field;
        }
        var sb = new StringBuilder(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length && IsOctal(field[i + 1]) && IsOctal(field[i + 2]) && IsOctal(field[i + 3]))
            {
                sb.Append((char)(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) | (field[i + 3] - '0')));
                i += 3;
            }
            else
            {
                sb.Append(field[i]);
            }
        }
        return sb.ToString();
    }

    private static bool IsOctal(char c) => c is >= '0' and <= '7';

    private static HashSet<string> MountPoints()
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": field 5 is the mount point.
            string[] fields = line.Split(' ');
            if (fields.Length > 4)
            {
                set.Add(UnescapeMountInfo(fields[4]));
            }
        }
        return set;
    }

    private static void Remount(string target, ulong flags, string source)
    {
        if (LibC.Mount(string.Empty, target, null, MsRemount | MsBind | (flags & (MsRdonly | MsNosuid | MsNodev | MsNoexec)), null) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            // Leave nothing half-done: the caller sees an error and no writable mount.
            LibC.Umount2(target, 0);
            throw new VesselException(VesselErrorReason.ToolFailed, $"remount read-only {target} (from {source}): {Describe(errno)}.");
        }
    }

    private static void Check(int result, string what, string source, string target)
    {
        if (result != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new VesselException(VesselErrorReason.Unavailable, $"{what} {source} {target}: {Describe(errno)}.");
        }
    }

    private static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
}
