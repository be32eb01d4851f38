using System.Text;
using System.Text.Json;
using Vessel.Common;
using Vessel.Ext4;
using Vessel.Oci;

namespace Vessel.Rootfs;

/// <summary>One file Vessel adds to every rootfs.</summary>
public sealed record ProvisioningFile(string Path, int Mode, byte[] Content);

/// <summary>What the provisioning files say about the sandbox.</summary>
public sealed record ProvisioningOptions
{
    public string Hostname { get; init; } = "vessel";
    public ImageConfig Config { get; init; } = ImageConfig.Empty;

    /// <summary>A static busybox for images without a shell; found on PATH when null.</summary>
    public string? BusyboxPath { get; init; }
}

/// <summary>
/// The provisioning files: the one set of files every rootfs gets, whether it was built
/// from an image or from a parent template. Everything Vessel owns lives under /.vessel;
/// /etc/hosts, /etc/hostname and /etc/resolv.conf are replaced (as a container runtime's
/// bind mounts would). <see cref="Version"/> enters template cache keys: bump it whenever
/// the set or a file's content rules change.
/// </summary>
public static class Provisioning
{
    public const int Version = 2;
    public const string VesselDirectory = "/.vessel";

    /// <summary>The static busybox every rootfs gets, for Vessel's own commands in the guest (sync, tar, a shell when the image has none).</summary>
    public const string GuestBusybox = VesselDirectory + "/busybox";

    public static IReadOnlyList<ProvisioningFile> Files(ProvisioningOptions options)
    {
        string busybox = options.BusyboxPath ?? ExternalProcess.ResolveTool("busybox");
        if (!File.Exists(busybox))
        {
            throw new VesselException(VesselErrorReason.ToolMissing,
                $"busybox not found at '{busybox}': install busybox-static (scripts/setup.sh)");
        }
        string hostname = options.Hostname;
        if (hostname.Length is 0 or > 63 || !hostname.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"'{hostname}' is not a valid hostname");
        }
        return
        [
            new("/etc/hosts", 0x1A4, Encoding.ASCII.GetBytes(
                $"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n{Vmm.NetworkConfig.HostAddress}\t{Vmm.NetworkConfig.HostName}\n")),
            new("/etc/hostname", 0x1A4, Encoding.ASCII.GetBytes(hostname + "\n")),
            new("/etc/resolv.conf", 0x1A4, "nameserver 10.0.2.3\n"u8.ToArray()),
            new(GuestBusybox, 0x1ED, File.ReadAllBytes(busybox)),
            new(VesselDirectory + "/image.json", 0x1A4, JsonSerializer.SerializeToUtf8Bytes(options.Config, RootfsJsonContext.Default.ImageConfig)),
            new(VesselDirectory + "/provision.json", 0x1A4, JsonSerializer.SerializeToUtf8Bytes(
                new ProvisionInfo(Version, hostname), RootfsJsonContext.Default.ProvisionInfo)),
        ];
    }

    /// <summary>Adds the files to an image being written; an existing entry at a path is replaced.</summary>
    public static void AddTo(Ext4Writer writer, IReadOnlyList<ProvisioningFile> files, DateTimeOffset timestamp)
    {
        var time = new FsTime(timestamp.ToUnixTimeSeconds(), 0);
        foreach (ProvisioningFile file in files)
        {
            string[] parts = file.Path.Split('/', StringSplitOptions.RemoveEmptyEntries);
            FsInode dir = writer.Root;
            for (int i = 0; i < parts.Length - 1; i++)
            {
                string key = FsInode.Key(Encoding.UTF8.GetBytes(parts[i]));
                if (!dir.Children!.TryGetValue(key, out FsInode? next))
                {
                    next = new FsInode(FsKind.Directory) { Permissions = 0x1ED, ModificationTime = time, AccessTime = time, ChangeTime = time };
                    writer.Link(dir, key, next);
                }
                else if (next.Kind != FsKind.Directory)
                {
                    throw new VesselException(VesselErrorReason.InvalidInput,
                        $"the image has '/{string.Join('/', parts.Take(i + 1))}' as a {next.Kind}, so Vessel cannot add {file.Path}; Vessel never follows an image's symlinks");
                }
                dir = next;
            }
            string name = FsInode.Key(Encoding.UTF8.GetBytes(parts[^1]));
            writer.Unlink(dir, name);
            var inode = new FsInode(FsKind.RegularFile) { Permissions = file.Mode, ModificationTime = time, AccessTime = time, ChangeTime = time };
            Ext4Writer.FileData data = writer.BeginFile(inode, file.Content.Length, Ext4Writer.CeilDiv(file.Content.Length, Ext4Writer.BlockSize));
            data.Write(0, file.Content);
            data.Complete();
            writer.Link(dir, name, inode);
        }
    }
}
