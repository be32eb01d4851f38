using System.Diagnostics;
using Vessel.Common;
using Vessel.Containerd;
using Vessel.Ext4;
using Vessel.Rootfs;

namespace Vessel.Shim;

/// <summary>
/// A container's root filesystem for its VM. containerd passes the rootfs as mounts (the
/// overlayfs snapshotter's active snapshot); the shim mounts them at BUNDLE/rootfs as runc
/// would and writes that tree into an ext4 image with the project's Ext4 writer (the tree is
/// read as a tar stream from GNU tar, which never follows the tree's symlinks, and applied like
/// an image layer, plus Vessel's provisioning files). The VM boots that image: its writes stay
/// in the image and do not reach containerd's snapshot (virtio-fs is the next step).
/// </summary>
internal static class ContainerRootfs
{
    /// <summary>Free space the image gets beyond its content (sparse: costs nothing until written).</summary>
    public const long FreeBytes = 512L << 20;

    /// <summary>Mounts containerd's rootfs mounts, in order, at <paramref name="target"/>; with none, the bundle's rootfs is already a tree.</summary>
    public static void Mount(IReadOnlyList<Vessel.Containerd.Api.Types.Mount> mounts, string target)
    {
        Directory.CreateDirectory(target);
        foreach (var m in mounts)
        {
            LinuxMount.MountAsGiven(m.Type, m.Source, m.Options, target);
        }
    }

    /// <summary>
    /// Writes the tree at <paramref name="tree"/> into a new ext4 image at <paramref name="image"/>,
    /// then Vessel's provisioning files, then <paramref name="boundFiles"/> (the spec's binds of host files, which win).
    /// </summary>
    public static async Task WriteImageAsync(string tree, string image, string hostname, IReadOnlyList<ProvisioningFile> boundFiles, CancellationToken cancellationToken)
    {
        using OutputFile output = OutputFile.Begin(image);
        var psi = new ProcessStartInfo(ExternalProcess.ResolveTool("tar"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "--numeric-owner", "--xattrs", "--xattrs-include=*", "--sparse", "-C", tree, "-cf", "-", "." })
        {
            psi.ArgumentList.Add(a);
        }
        using var tar = new Process { StartInfo = psi };
        tar.Start();
        Task<string> stderr = tar.StandardError.ReadToEndAsync(cancellationToken);
        try
        {
            DateTimeOffset now = DateTimeOffset.UtcNow;
            using var writer = new Ext4Writer(output.PartialPath, new Ext4WriterOptions { FreeBytes = FreeBytes, Timestamp = now, Label = "vessel-rootfs" });
            var applier = new LayerApplier(writer);
            await applier.ApplyAsync(tar.StandardOutput.BaseStream, 1, $"container rootfs {tree}", null, cancellationToken);
            await tar.WaitForExitAsync(cancellationToken);
            if (tar.ExitCode != 0)
            {
                throw new VesselException(VesselErrorReason.ToolFailed, $"tar of the container rootfs {tree} exited with {tar.ExitCode}: {(await stderr).Trim()}");
            }
            Provisioning.AddTo(writer, [.. Provisioning.Files(new ProvisioningOptions { Hostname = hostname }), .. boundFiles], now);
            writer.Finish();
        }
        finally
        {
            if (!tar.HasExited)
            {
                tar.Kill(entireProcessTree: true);
                await tar.WaitForExitAsync(CancellationToken.None);
            }
        }
        output.Commit();
    }

    /// <summary>A hostname the guest can take: the spec's, else the container id's first 63 safe characters, else "vessel".</summary>
    public static string Hostname(string? specHostname, string containerId)
    {
        static bool Valid(string h) => h.Length is > 0 and <= 63 && h.All(c => char.IsAsciiLetterOrDigit(c) || c == '-');
        if (specHostname is { } h && Valid(h))
        {
            return h;
        }
        string id = new(containerId.Where(c => char.IsAsciiLetterOrDigit(c) || c == '-').Take(63).ToArray());
        return Valid(id) ? id : "vessel";
    }
}
