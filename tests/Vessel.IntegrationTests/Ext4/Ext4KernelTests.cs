namespace Vessel.IntegrationTests.Ext4;

/// <summary>The kernel and e2fsprogs accept what the writer produces: mount read-write, write, grow, shrink.</summary>
public sealed class Ext4KernelTests
{
    private static async Task<string> BuildBusyboxAsync(TempDirectory dir, RootfsBuildOptions options)
    {
        string output = dir.Combine("rootfs.ext4");
        var source = new LayersImageSource("busybox", await File.ReadAllBytesAsync(TestImages.BusyboxTarball));
        await RootfsBuilder.BuildAsync(source, output, options, null, CancellationToken.None);
        return output;
    }

    [RequiresFact("root", "mount", "umount", "e2fsck", "busybox", "busybox-image", Timeout = 180_000)]
    public async Task Kernel_mounts_the_image_read_write_and_e2fsck_stays_clean_after_writes()
    {
        using var dir = TempDirectory.Create();
        string image = await BuildBusyboxAsync(dir, new RootfsBuildOptions { FreeBytes = 64 << 20 });
        string mnt = dir.Combine("mnt");
        Directory.CreateDirectory(mnt);
        (await ExternalProcess.RunAsync("mount", ["-o", "loop", image, mnt], CancellationToken.None)).EnsureSuccess();
        try
        {
            Assert.True(File.Exists(Path.Combine(mnt, "bin", "busybox")));
            Assert.Equal("vessel\n", await File.ReadAllTextAsync(Path.Combine(mnt, "etc", "hostname")));
            // Writes: a new directory with many files (grows an htree), a big file, a rename, a delete.
            string many = Path.Combine(mnt, "many");
            Directory.CreateDirectory(many);
            for (int i = 0; i < 2000; i++)
            {
                await File.WriteAllTextAsync(Path.Combine(many, $"f{i}"), i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            byte[] big = new byte[20 << 20];
            Random.Shared.NextBytes(big);
            await File.WriteAllBytesAsync(Path.Combine(mnt, "big"), big);
            File.Move(Path.Combine(mnt, "etc", "motd"), Path.Combine(mnt, "etc", "motd.old"));
            File.Delete(Path.Combine(mnt, "etc", "issue"));
        }
        finally
        {
            (await ExternalProcess.RunAsync("umount", [mnt], CancellationToken.None)).EnsureSuccess();
        }
        string? fsck = await E2fs.CheckAsync(image);
        Assert.True(fsck is null, fsck);
        Assert.DoesNotContain(image, await File.ReadAllTextAsync("/proc/mounts"), StringComparison.Ordinal);
    }

    [RequiresFact("resize2fs", "e2fsck", "busybox", "busybox-image", Timeout = 180_000)]
    public async Task Resize2fs_grows_and_shrinks_the_image()
    {
        using var dir = TempDirectory.Create();
        string image = await BuildBusyboxAsync(dir, new RootfsBuildOptions { FreeBytes = 32 << 20 });
        (await ExternalProcess.RunAsync("resize2fs", ["-f", image, "3G"], CancellationToken.None, timeout: TimeSpan.FromMinutes(2))).EnsureSuccess();
        string? fsck = await E2fs.CheckAsync(image);
        Assert.True(fsck is null, fsck);
        Assert.Equal(3L << 30, new FileInfo(image).Length);
        (await ExternalProcess.RunAsync("resize2fs", ["-f", image, "40M"], CancellationToken.None, timeout: TimeSpan.FromMinutes(2))).EnsureSuccess();
        fsck = await E2fs.CheckAsync(image);
        Assert.True(fsck is null, fsck);
        string busybox = await E2fs.DebugfsAsync(image, "stat /bin/busybox");
        Assert.Contains("Type: regular", busybox, StringComparison.Ordinal);
    }

    [RequiresFact("tune2fs", "e2fsck", "busybox", "busybox-image", Timeout = 120_000)]
    public async Task Reserved_blocks_follow_the_option()
    {
        using var dir = TempDirectory.Create();
        string image = await BuildBusyboxAsync(dir, new RootfsBuildOptions { SizeBytes = 256L << 20, ReservedBytes = 16L << 20 });
        var r = (await ExternalProcess.RunAsync("tune2fs", ["-l", image], CancellationToken.None)).EnsureSuccess();
        Assert.Contains("Reserved block count:     4096", r.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("Block count:              65536", r.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("has_journal", r.StandardOutput, StringComparison.Ordinal);
    }
}
