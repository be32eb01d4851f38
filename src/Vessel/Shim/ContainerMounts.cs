using Vessel.Interop;
using Vessel.Rootfs;

namespace Vessel.Shim;

/// <summary>What the VM does with the spec's mounts (<see cref="ContainerMounts.Plan"/>).</summary>
/// <param name="Files">Host files bound into the container, copied into the VM's image (CRI's /etc/hosts, /etc/resolv.conf...).</param>
/// <param name="Tmpfs">tmpfs mounts the guest makes before the first process starts.</param>
internal sealed record MountPlan(IReadOnlyList<ProvisioningFile> Files, IReadOnlyList<OciMount> Tmpfs);

/// <summary>
/// The OCI spec's mounts in a VM whose root is a copy of the container's rootfs, with no
/// virtio-fs yet. The guest's own /proc, /sys, /dev, /dev/pts and /dev/shm stand for the
/// spec's mounts there (and /dev/mqueue, /sys/fs/cgroup are accepted, not mounted); tmpfs
/// elsewhere is mounted in the guest with its size/mode options; a bind of a host regular file
/// up to <see cref="MaxBindFileBytes"/> is copied into the image (read-only binds included: the
/// VM's copy is its own); a bind of a directory, a larger or special file, or any other type is
/// refused, naming the mount: nothing is silently dropped.
/// </summary>
internal static class ContainerMounts
{
    public const long MaxBindFileBytes = 1 << 20;

    /// <summary>Destinations the guest's init already mounts (or that Vessel accepts without mounting: mqueue, cgroup).</summary>
    private static readonly HashSet<string> GuestProvided = new(StringComparer.Ordinal)
    {
        "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys/fs/cgroup",
    };

    /// <summary>tmpfs options the guest's mount passes on; others (strictatime, ...) are left to the default.</summary>
    private static readonly string[] TmpfsFlags = ["nosuid", "nodev", "noexec", "ro", "rw", "noatime", "relatime", "nodiratime"];
    private static readonly string[] TmpfsData = ["mode=", "size=", "nr_inodes=", "uid=", "gid="];

    public static MountPlan Plan(IReadOnlyList<OciMount> mounts)
    {
        var files = new List<ProvisioningFile>();
        var tmpfs = new List<OciMount>();
        foreach (OciMount m in mounts)
        {
            if (GuestProvided.Contains(m.Destination) && !m.IsBind)
            {
                continue;
            }
            if (m.IsBind)
            {
                files.Add(CopyOf(m));
            }
            else if (m.Type == "tmpfs")
            {
                tmpfs.Add(m with { Options = m.Options.Where(o => TmpfsFlags.Contains(o) || TmpfsData.Any(d => o.StartsWith(d, StringComparison.Ordinal))).ToList() });
            }
            else
            {
                throw new VesselException(VesselErrorReason.Unsupported,
                    $"mount {m.Destination} of type '{m.Type}' cannot be made in a Vessel VM (it takes tmpfs, binds of small host files, and the guest's own proc, sysfs, devpts).");
            }
        }
        return new MountPlan(files, tmpfs);
    }

    /// <summary>The guest command (run as root with the image's root) that makes a tmpfs mount, with Vessel's own busybox.</summary>
    public static IReadOnlyList<string> TmpfsCommand(OciMount m)
    {
        string busybox = Provisioning.GuestBusybox;
        string options = m.Options.Count > 0 ? string.Join(',', m.Options) : "defaults";
        return [busybox, "sh", "-c", $"{busybox} mkdir -p \"$1\" && {busybox} mount -t tmpfs -o \"$2\" tmpfs \"$1\"", "mount", m.Destination, options];
    }

    private static ProvisioningFile CopyOf(OciMount m)
    {
        // The source is the spec's host path (containerd's or the operator's, as runc reads it), never an image path.
        int? type = UnixFile.TypeOfFollowingLinks(m.Source);
        if (type == LibC.SIfDir)
        {
            throw new VesselException(VesselErrorReason.Unsupported,
                $"mount {m.Destination}: a bind of the host directory {m.Source} cannot reach a Vessel VM (no virtio-fs for the shim yet); Vessel copies only regular files up to {MaxBindFileBytes >> 20} MiB.");
        }
        if (type != LibC.SIfReg)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"mount {m.Destination}: the bind source {m.Source} is {(type is { } t ? UnixFile.Describe(t) : "missing")}, not a regular file on the host.");
        }
        var info = new FileInfo(m.Source);
        if (info.Length > MaxBindFileBytes)
        {
            throw new VesselException(VesselErrorReason.Unsupported,
                $"mount {m.Destination}: the host file {m.Source} is {info.Length} bytes; Vessel copies bound files into the VM only up to {MaxBindFileBytes >> 20} MiB (no virtio-fs for the shim yet).");
        }
        byte[] content = File.ReadAllBytes(m.Source);
        // Permission bits only: no setuid or setgid from a host file.
        int mode = OperatingSystem.IsLinux() ? (int)File.GetUnixFileMode(m.Source) & 0x1FF : 0x1A4;
        return new ProvisioningFile(m.Destination, mode, content);
    }
}
