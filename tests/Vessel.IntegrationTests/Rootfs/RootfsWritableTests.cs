using System.Text.RegularExpressions;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// The built image is an ordinary writable ext4: the kernel mounts it read-write, writes
/// into it, e2fsck still finds nothing, resize2fs grows it; --size, --free and --reserved
/// land in the superblock.
/// </summary>
public sealed partial class RootfsWritableTests
{
    [RequiresFact("root", "e2fsck", "resize2fs", "dumpe2fs", "losetup", "mount", "busybox-image", Timeout = 120_000)]
    public async Task Image_mounts_read_write_takes_writes_and_grows_with_resize2fs()
    {
        using CancellationTokenSource deadline = TestDeadline.Before(120_000);
        CancellationToken ct = deadline.Token;
        using TempDirectory work = TempDirectory.Create("vessel-rw-");
        string image = work.Combine("rw.ext4");
        await RootfsBuild.BuildAsync(TestImages.BusyboxTarball, image, ct, "--free", "64M");
        Assert.Contains("has_journal", (await Dumpe2fsAsync(image, ct))["Filesystem features"], StringComparison.Ordinal);

        LoopMount mount = await LoopMount.MountAsync(image, work.Path, readOnly: false, ct);
        try
        {
            string dir = Path.Combine(mount.MountPoint, "sandbox-writes");
            Directory.CreateDirectory(dir);
            byte[] data = new byte[32 << 20];
            new Random(1).NextBytes(data);
            await File.WriteAllBytesAsync(Path.Combine(dir, "blob"), data);
            for (int i = 0; i < 2000; i++)
            {
                await File.WriteAllTextAsync(Path.Combine(dir, $"small-{i}"), $"{i}\n");
            }
            File.Delete(Path.Combine(mount.MountPoint, "etc", "motd"));
        }
        finally
        {
            await mount.DisposeAsync();
        }
        await mount.AssertReleasedAsync();
        await RootfsChecker.AssertFsckCleanAsync(image, ct);

        // resize2fs wants a check newer than the last mount; -n above changes nothing, -p records it.
        (await ExternalProcess.RunAsync("e2fsck", ["-fp", image], ct)).EnsureSuccess();
        long before = new FileInfo(image).Length;
        (await ExternalProcess.RunAsync("resize2fs", [image, $"{(before + (512L << 20)) / 1024}K"], ct)).EnsureSuccess();
        await RootfsChecker.AssertFsckCleanAsync(image, ct);
        Assert.Equal(before + (512L << 20), new FileInfo(image).Length);
    }

    [RequiresFact("e2fsck", "dumpe2fs", "busybox-image", Timeout = 120_000)]
    public async Task Size_and_reserved_options_set_the_superblock()
    {
        using CancellationTokenSource deadline = TestDeadline.Before(120_000);
        CancellationToken ct = deadline.Token;
        var (sb, blockSize, length) = await BuildBusyboxAsync("sized", ct, "--size", "200M", "--reserved", "16M");
        Assert.Equal(200L << 20, long.Parse(sb["Block count"]) * blockSize);
        Assert.Equal(16L << 20, long.Parse(sb["Reserved block count"]) * blockSize);
        Assert.Equal(200L << 20, length);
    }

    [RequiresFact("e2fsck", "dumpe2fs", "busybox-image", Timeout = 120_000)]
    public async Task Free_option_leaves_at_least_that_much_free_space()
    {
        using CancellationTokenSource deadline = TestDeadline.Before(120_000);
        CancellationToken ct = deadline.Token;
        var (sb, blockSize, _) = await BuildBusyboxAsync("free", ct, "--free", "300M");
        long free = (long.Parse(sb["Free blocks"]) - long.Parse(sb["Reserved block count"])) * blockSize;
        Assert.True(free >= 300L << 20, $"only {free >> 20} MiB free for a --free of 300M");
        Assert.True(free < 600L << 20, $"{free >> 20} MiB free for a --free of 300M: the size is not derived from the content");
    }

    [RequiresFact("e2fsck", "dumpe2fs", Timeout = 120_000)]
    public async Task Free_space_comes_with_free_inodes_even_when_the_content_is_many_small_files()
    {
        using CancellationTokenSource deadline = TestDeadline.Before(120_000);
        CancellationToken ct = deadline.Token;
        using TempDirectory work = TempDirectory.Create("vessel-inodes-");
        string tarball = work.Combine("many.tar");
        GeneratedImage.Write(tarball, wideDirectoryFiles: 20_000, treeFiles: 0, bigFileSize: 0);
        string image = work.Combine("many.ext4");

        await RootfsBuild.BuildAsync(tarball, image, ct, "--size", "256M");

        await RootfsChecker.AssertFsckCleanAsync(image, ct);
        Dictionary<string, string> sb = await Dumpe2fsAsync(image, ct);
        long freeBytes = long.Parse(sb["Free blocks"]) * long.Parse(sb["Block size"]);
        long freeInodes = long.Parse(sb["Free inodes"]);
        // A sandbox writes files into the free space; mke2fs gives one inode per 16 KiB, ask for a quarter of that.
        Assert.True(freeInodes >= freeBytes / (64 << 10),
            $"{freeBytes >> 20} MiB free but only {freeInodes} free inodes: the image is full as soon as a sandbox creates files");
    }

    /// <summary>
    /// The busybox image built with these options in a work directory of its own, checked clean
    /// by e2fsck: its superblock (dumpe2fs -h), block size and file length.
    /// </summary>
    private static async Task<(Dictionary<string, string> Superblock, long BlockSize, long Length)> BuildBusyboxAsync(string name, CancellationToken ct, params string[] options)
    {
        using TempDirectory work = TempDirectory.Create($"vessel-{name}-");
        string image = work.Combine(name + ".ext4");
        await RootfsBuild.BuildAsync(TestImages.BusyboxTarball, image, ct, options);
        await RootfsChecker.AssertFsckCleanAsync(image, ct);
        Dictionary<string, string> sb = await Dumpe2fsAsync(image, ct);
        return (sb, long.Parse(sb["Block size"], CultureInfo.InvariantCulture), new FileInfo(image).Length);
    }

    /// <summary><c>dumpe2fs -h</c> as "Key: value" pairs.</summary>
    private static async Task<Dictionary<string, string>> Dumpe2fsAsync(string image, CancellationToken ct)
    {
        ProcessResult r = (await ExternalProcess.RunAsync("dumpe2fs", ["-h", image], ct)).EnsureSuccess();
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (Match m in SuperblockLine().Matches(r.StandardOutput))
        {
            fields[m.Groups[1].Value.Trim()] = m.Groups[2].Value.Trim();
        }
        return fields;
    }

    [GeneratedRegex(@"^([A-Za-z][A-Za-z #/_-]*):\s+(.*)$", RegexOptions.Multiline)]
    private static partial Regex SuperblockLine();
}
