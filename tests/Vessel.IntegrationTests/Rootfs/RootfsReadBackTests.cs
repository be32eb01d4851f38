using Vessel.Ext4;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// Builds rootfs images from every kind of source with the CLI and checks each one against
/// an independent oracle: e2fsck -fn, then a read-only loop mount compared entry by entry.
/// </summary>
public sealed class RootfsReadBackTests(RulesImage rules) : IClassFixture<RulesImage>
{
    [RequiresTheory("root", "umoci", "skopeo", "e2fsck", "losetup", "mount", "mknod", "mkfifo", "touch", Timeout = 120_000)]
    [InlineData("oci-layout")]
    [InlineData("oci-layout-uncompressed")]
    [InlineData("oci-archive")]
    [InlineData("docker-archive")]
    public async Task Multi_layer_image_matches_umoci_unpack(string kind)
    {
        using CancellationTokenSource deadline = TestDeadline.Before(120_000);
        CancellationToken ct = deadline.Token;
        Assert.Null(rules.Missing);
        string source = kind switch
        {
            "oci-layout" => $"{rules.Layout}:{RulesImage.Tag}",
            "oci-layout-uncompressed" => $"{rules.UncompressedLayout}:{RulesImage.Tag}",
            "oci-archive" => rules.OciArchive,
            "docker-archive" => rules.DockerArchive,
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        using TempDirectory work = TempDirectory.Create("vessel-readback-");
        string image = work.Combine("rootfs.ext4");

        await RootfsBuild.BuildAsync(source, image, ct);

        RootfsChecker.AssertMetadata(image, RulesImage.Env, RulesImage.WorkingDir);
        TreeSnapshot actual = await RootfsChecker.AssertImageMatchesAsync(image, rules.Expected, work.Path, ct);
        // The rules the oracle applied, spelled out, so a wrong oracle cannot hide a wrong image.
        Assert.False(actual.Entries.ContainsKey("/gone/file-to-delete"));
        Assert.False(actual.Entries.ContainsKey("/gone/dir-to-delete"));
        Assert.False(actual.Entries.ContainsKey("/opaque/old1"));
        Assert.False(actual.Entries.ContainsKey("/opaque/sub"));
        Assert.False(actual.Entries.ContainsKey("/data/empty"));
        Assert.Equal(["/data/cross-link"], actual["/data/base-file"].HardLinks);
        Assert.Equal(["/data/links/b"], actual["/data/links/a"].HardLinks);
        Assert.Equal(FsKind.Symlink, actual["/replace/dir-becomes-symlink"].Type);
        Assert.Equal(FsKind.Directory, actual["/replace/file-becomes-dir"].Type);
        Assert.Contains("security.capability", actual["/bin/tool"].Xattrs.Keys);
        Assert.Equal(4102444800, actual["/data/readonly"].MtimeSeconds);
        Assert.Equal((4095u, 1048575u), (actual["/data/dev/bigdev"].DeviceMajor, actual["/data/dev/bigdev"].DeviceMinor));
        Assert.True(actual["/data/sparse"].AllocatedBytes < 1 << 20, $"/data/sparse takes {actual["/data/sparse"].AllocatedBytes} bytes: holes were written out");
    }
}

/// <summary>
/// A real distribution (a Debian minbase from debootstrap, as a plain tarball: thousands of
/// entries, hard links, device nodes, setuid programs) against GNU tar's extraction.
/// </summary>
public sealed class RootfsDebianTests
{
    [RequiresFact("root", "e2fsck", "losetup", "mount", "tar", "debian-image", Timeout = 180_000)]
    public async Task Debian_minbase_tarball_matches_tar_extraction()
    {
        string tarball = TestImages.DebianTarball; // built (minutes) and cached on first use, before the deadline starts
        using CancellationTokenSource deadline = TestDeadline.Before(180_000);
        CancellationToken ct = deadline.Token;
        using TempDirectory work = TempDirectory.Create("vessel-readback-");
        string image = work.Combine("debian.ext4");

        await RootfsBuild.BuildAsync(tarball, image, ct);

        RootfsChecker.AssertMetadata(image);
        string oracle = await Oracles.TarExtractAsync(tarball, work.Combine("oracle"), ct);
        TreeSnapshot expected = TreeSnapshot.Take(oracle, cancellationToken: ct);
        TreeSnapshot actual = await RootfsChecker.AssertImageMatchesAsync(image, expected, work.Path, ct);
        Assert.Equal(FsKind.Symlink, actual["/bin"].Type); // merged /usr
        Assert.Equal(FsKind.RegularFile, actual["/usr/bin/dpkg"].Type);
        Assert.True(expected.Entries.Count > 3000, $"the Debian oracle has only {expected.Entries.Count} entries");
    }

    [RequiresFact("root", "e2fsck", "losetup", "mount", "tar", "busybox-image", Timeout = 120_000)]
    public async Task Busybox_tarball_matches_tar_extraction()
    {
        using CancellationTokenSource deadline = TestDeadline.Before(120_000);
        CancellationToken ct = deadline.Token;
        using TempDirectory work = TempDirectory.Create("vessel-readback-");
        string image = work.Combine("busybox.ext4");
        string tarball = TestImages.BusyboxTarball;

        await RootfsBuild.BuildAsync(tarball, image, ct);

        RootfsChecker.AssertMetadata(image);
        string oracle = await Oracles.TarExtractAsync(tarball, work.Combine("oracle"), ct);
        TreeSnapshot expected = TreeSnapshot.Take(oracle, cancellationToken: ct);
        TreeSnapshot actual = await RootfsChecker.AssertImageMatchesAsync(image, expected, work.Path, ct);
        Assert.Equal(FsKind.Symlink, actual["/bin/sh"].Type);
        Assert.True(expected.Entries.Count > 250, $"the busybox oracle has only {expected.Entries.Count} entries");
    }
}
