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
    /// <summary>
    /// Mounts a containerd mount read-only at <paramref name="target"/>, whatever its options
    /// say (a view is read-only by contract; this makes it so for the kernel too).
    /// </summary>
    public static void MountReadOnly(string type, string source, IEnumerable<string> options, string target)
    {
        (ulong flags, string data) = ParseOptions(options);
        flags |= LibC.MsRdonly | LibC.MsNosuid | LibC.MsNodev;
        switch (type)
        {
            case "bind":
                flags |= LibC.MsBind;
                Check(LibC.Mount(source, target, null, flags & (LibC.MsBind | LibC.MsRec), null), "mount --bind", source, target);
                // A bind mount ignores MS_RDONLY on creation: remount it read-only.
                Remount(target, flags, source);
                break;
            case "overlay":
                if (data.Contains("upperdir=", StringComparison.Ordinal))
                {
                    throw new VesselException(VesselErrorReason.Unsupported,
                        $"The view's overlay mount has an upperdir: it is not a read-only view ({data}).");
                }
                Check(LibC.Mount(source.Length > 0 ? source : "overlay", target, "overlay", flags & ~(LibC.MsBind | LibC.MsRec), data), "mount -t overlay", source, target);
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
                Check(LibC.Mount(source, target, null, LibC.MsBind | (flags & LibC.MsRec), null), "mount --bind", source, target);
                if ((flags & LibC.MsRdonly) != 0)
                {
                    Remount(target, flags, source);
                }
                break;
            case "overlay":
                Check(LibC.Mount(source.Length > 0 ? source : "overlay", target, "overlay", flags & ~(LibC.MsBind | LibC.MsRec), data), "mount -t overlay", source, target);
                break;
            default:
                throw new VesselException(VesselErrorReason.Unsupported,
                    $"The snapshotter gave a '{type}' rootfs mount; Vessel mounts only 'bind' and 'overlay'.");
        }
    }

    /// <summary>Bind-mounts one file read-only (nosuid, nodev, noexec) onto an existing file.</summary>
    public static void BindFileReadOnly(string source, string target)
    {
        Check(LibC.Mount(source, target, null, LibC.MsBind, null), "mount --bind", source, target);
        Remount(target, LibC.MsBind | LibC.MsRdonly | LibC.MsNosuid | LibC.MsNodev | LibC.MsNoexec, source);
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
                if (errno is LibC.Einval or LibC.Enoent)
                {
                    break;
                }
                throw new VesselException(errno == LibC.Ebusy ? VesselErrorReason.Conflict : VesselErrorReason.ToolFailed,
                    $"umount {target}: {Describe(errno)}{(errno == LibC.Ebusy ? " (a process still uses it; stop it and clean up again)" : string.Empty)}.");
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
                case "ro": flags |= LibC.MsRdonly; break;
                case "rw": flags &= ~LibC.MsRdonly; break;
                case "bind": flags |= LibC.MsBind; break;
                case "rbind": flags |= LibC.MsBind | LibC.MsRec; break;
                case "nosuid": flags |= LibC.MsNosuid; break;
                case "nodev": flags |= LibC.MsNodev; break;
                case "noexec": flags |= LibC.MsNoexec; break;
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
        if (LibC.Mount(string.Empty, target, null, LibC.MsRemount | LibC.MsBind | (flags & (LibC.MsRdonly | LibC.MsNosuid | LibC.MsNodev | LibC.MsNoexec)), null) != 0)
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
