using Vessel.Blocks;
using Vessel.Common;
using Vessel.Ext4;
using Vessel.Nbd;
using Vessel.Rootfs;

namespace Vessel.Templates;

/// <summary>
/// The base phase of a template built from a parent template (seed 001, done without
/// copying): a <see cref="LayerSession"/> over the parent's layer at the new size, exposed
/// to the host with nbdfuse; <c>e2fsck -fy</c> when the parent was not cleanly unmounted (a
/// snapshotted parent), <c>resize2fs</c> (grow or shrink),
/// the provisioning files rewritten with debugfs, the pre-boot hooks (reserved blocks),
/// <c>e2fsck -fy</c> again; then only the blocks those tools changed are stored as the new
/// layer over the parent's. Nothing is mounted and the parent's data is never copied.
/// </summary>
internal static class TemplateResize
{
    private const long ProvisioningSlack = 1L << 20; // directory blocks and inodes the rewrite may need

    public static async Task<BuildHeader> BuildBaseAsync(
        LayerStore store,
        Guid parentLayer,
        long targetSize,
        IReadOnlyList<ProvisioningFile> files,
        IReadOnlyList<PreBootHook> hooks,
        string workDirectory,
        Action<string>? report,
        CancellationToken cancellationToken)
    {
        using LayerSession session = await LayerSession.OpenAsync(store, parentLayer, targetSize, workDirectory, cancellationToken);
        NbdFuseFile view = await NbdFuseFile.MountAsync(session, workDirectory, cancellationToken);
        await CleanupScope.RunAsync(view, async v =>
        {
            string image = v.FilePath;
            Ext4Info info = await Ext4Tools.ReadInfoAsync(image, cancellationToken);
            if (!info.Clean)
            {
                // A parent snapshotted in a running VM: replay its journal before anything else touches it.
                report?.Invoke("checking the parent's filesystem (e2fsck -fy: it was not cleanly unmounted)");
                await Ext4Tools.CheckAsync(image, cancellationToken);
                info = await Ext4Tools.ReadInfoAsync(image, cancellationToken);
            }
            else
            {
                // Clean: resize2fs guards itself (it asks for a check when one is due) and the full check runs at the end.
                report?.Invoke("the parent's filesystem is clean: resizing without a check first (e2fsck -fy checks the result)");
            }
            long provisioning = files.Sum(f => (long)f.Content.Length) + ProvisioningSlack;
            long used = (info.BlockCount - info.FreeBlocks) * info.BlockSize;
            // resize2fs -P is a pass over all metadata: only worth it when the target is near
            // what the files use (a quarter more than the used blocks covers the new size's group metadata).
            if (targetSize < info.SizeBytes && targetSize < used + (used / 4) + provisioning + (16L << 20))
            {
                long minimum = await Ext4Tools.MinimumSizeAsync(image, info.BlockSize, cancellationToken);
                long needed = RoundUpMiB(minimum + provisioning);
                if (targetSize < needed)
                {
                    throw new VesselException(VesselErrorReason.NoSpace,
                        $"cannot shrink the parent's {ByteSize.Format(info.SizeBytes)} filesystem to {ByteSize.Format(targetSize)}: its files need at least "
                        + $"{ByteSize.Format(needed)} ({ByteSize.Format(minimum)} by resize2fs -P, plus {ByteSize.Format(provisioning)} for the provisioning files); "
                        + $"set diskSize to {needed >> 20}M or more.");
                }
            }
            if (targetSize != info.SizeBytes)
            {
                report?.Invoke($"resizing {ByteSize.Format(info.SizeBytes)} -> {ByteSize.Format(targetSize)} (resize2fs)");
                await Ext4Tools.ResizeAsync(image, targetSize, cancellationToken);
            }
            report?.Invoke("rewriting the provisioning files (debugfs)");
            await DebugfsWriter.WriteFilesAsync(image, files, DateTimeOffset.UtcNow, workDirectory, cancellationToken);
            await PreBootHook.RunAllAsync(hooks, new PreBootContext(image, workDirectory), report, cancellationToken);
            report?.Invoke("checking the result (e2fsck -fy)");
            await Ext4Tools.CheckAsync(image, cancellationToken);
            return 0;
        });
        report?.Invoke($"storing {ByteSize.Format(session.PendingDataBytes)} of changed blocks as the new layer");
        return await session.ExportAsync(cancellationToken);
    }

    private static long RoundUpMiB(long bytes) => (bytes + (1L << 20) - 1) & ~((1L << 20) - 1);
}
