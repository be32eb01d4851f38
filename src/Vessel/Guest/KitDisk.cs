using System.Security.Cryptography;
using System.Text;
using Vessel.Ext4;
using Vessel.Rootfs;

namespace Vessel.Guest;

/// <summary>
/// The kit disk: a read-only ext4 image, written by Vessel's own <see cref="Ext4Writer"/>, that
/// holds the agent with its runtime and the host libraries it loads. Stored once per kit id and
/// attached read-only to every VM of that kit (never copied), so the host's page cache holds
/// one copy for all of them and the guest keeps only the pages it touches, reclaimably, instead
/// of an unpacked initramfs in RAM. The guest mounts it at <see cref="MountPoint"/> and finds it
/// by its virtio-blk serial <see cref="Serial"/>.
/// </summary>
internal static class KitDisk
{
    /// <summary>The virtio-blk serial the guest's init looks for in /sys/block/vd*/serial.</summary>
    public const string Serial = "vessel-kit";

    /// <summary>Where init mounts the kit disk in the guest.</summary>
    public const string MountPoint = "/vessel/kit";

    /// <summary>The agent's directory on the kit disk.</summary>
    public const string AgentDirectory = "/agent";

    /// <summary>Free space left in the image: none is needed (read-only), a little keeps e2fsck's view ordinary.</summary>
    private const long FreeBytes = 1L << 20;

    /// <summary>One file on the disk: its path there, its mode and where its bytes come from on the host.</summary>
    public readonly record struct Entry(string Path, int Mode, string Source);

    /// <summary>Writes the image at <paramref name="path"/>; its identity (UUID, hash seed) comes from <paramref name="kitId"/>, so one kit gives one image.</summary>
    public static void Write(string path, string kitId, IReadOnlyList<Entry> entries)
    {
        byte[] identity = SHA256.HashData(Encoding.UTF8.GetBytes("vessel-kit-disk|" + kitId));
        var timestamp = DateTimeOffset.FromUnixTimeSeconds(0);
        using var writer = new Ext4Writer(path, new Ext4WriterOptions
        {
            FreeBytes = FreeBytes,
            BytesPerInode = 65536,
            Label = "vessel-kit",
            Uuid = new Guid(identity.AsSpan(0, 16)),
            HashSeed = identity[16..32],
            Timestamp = timestamp,
        });
        foreach (Entry e in entries)
        {
            // One file at a time: the largest runtime file is tens of MiB, the whole set ~80.
            Provisioning.AddTo(writer, [new ProvisioningFile(e.Path, e.Mode, File.ReadAllBytes(e.Source))], timestamp);
        }
        writer.Finish();
    }
}
