using System.Formats.Tar;

namespace Vessel.Tests.Rootfs;

public sealed class RootfsBuilderTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create();

    private string Output => _dir.Combine("rootfs.ext4");

    public void Dispose() => _dir.Dispose();

    /// <summary>Builds <paramref name="source"/> into the test's rootfs.ext4, asserts that e2fsck finds the image clean and returns its path.</summary>
    private async Task<string> BuildCleanAsync(LayersImageSource source, RootfsBuildOptions options)
    {
        await RootfsBuilder.BuildAsync(source, Output, options, null, CancellationToken.None);
        string? fsck = await E2fs.CheckAsync(Output);
        Assert.True(fsck is null, fsck);
        return Output;
    }

    [RequiresFact("e2fsck", "debugfs", "busybox", "busybox-image", Timeout = 120_000)]
    public async Task Busybox_tarball_builds_a_clean_image()
    {
        var source = new LayersImageSource("busybox", await File.ReadAllBytesAsync(TestImages.BusyboxTarball));
        RootfsBuildResult result = await RootfsBuilder.BuildAsync(source, Output, new RootfsBuildOptions(), null, CancellationToken.None);
        string? fsck = await E2fs.CheckAsync(Output);
        Assert.True(fsck is null, fsck);
        Assert.True(result.Filesystem.Files > 50);
        string busybox = await E2fs.DebugfsAsync(Output, "stat /bin/busybox");
        Assert.Contains("Type: regular", busybox, StringComparison.Ordinal);
        Assert.Equal("vessel\n", System.Text.Encoding.ASCII.GetString(await E2fs.ReadFileAsync(Output, "/etc/hostname")));
    }

    [RequiresFact("e2fsck", "busybox", Timeout = 120_000)]
    public async Task Large_directory_becomes_a_valid_htree()
    {
        byte[] layer = LayersImageSource.Tar(w =>
        {
            LayersImageSource.Dir(w, "many/");
            for (int i = 0; i < 30000; i++)
            {
                LayersImageSource.File(w, $"many/file-with-a-longer-name-{i:D6}", i % 7 == 0 ? "x" : "");
            }
        });
        string output = await BuildCleanAsync(new LayersImageSource("many", layer), new RootfsBuildOptions { FreeBytes = 16 << 20 });
        string ls = await E2fs.DebugfsAsync(output, "stat /many");
        Assert.Contains("Flags: 0x81000", ls, StringComparison.Ordinal); // extents + htree index
    }

    [RequiresFact("e2fsck", "busybox", Timeout = 120_000)]
    public async Task Whiteouts_opaque_dirs_and_hard_links_follow_oci_rules()
    {
        byte[] lower = LayersImageSource.Tar(w =>
        {
            LayersImageSource.Dir(w, "a/");
            LayersImageSource.File(w, "a/gone", "lower");
            LayersImageSource.File(w, "a/kept", "lower");
            LayersImageSource.Dir(w, "opq/");
            LayersImageSource.File(w, "opq/old", "old");
            LayersImageSource.File(w, "target", "shared data");
        });
        byte[] upper = LayersImageSource.Tar(w =>
        {
            LayersImageSource.File(w, "a/.wh.gone", "");
            LayersImageSource.File(w, "opq/new", "new");
            LayersImageSource.File(w, "opq/.wh..wh..opq", "");
            LayersImageSource.Link(w, TarEntryType.HardLink, "hard", "target");
        });
        string output = await BuildCleanAsync(new LayersImageSource("two", lower, upper), new RootfsBuildOptions { FreeBytes = 8 << 20 });
        string a = await E2fs.DebugfsAsync(output, "ls -l /a");
        Assert.DoesNotContain("gone", a, StringComparison.Ordinal);
        Assert.Contains("kept", a, StringComparison.Ordinal);
        string opq = await E2fs.DebugfsAsync(output, "ls -l /opq");
        Assert.DoesNotContain("old", opq, StringComparison.Ordinal);
        Assert.Contains("new", opq, StringComparison.Ordinal);
        string hard = await E2fs.DebugfsAsync(output, "stat /hard");
        Assert.Contains("Links: 2", hard, StringComparison.Ordinal);
    }

    [RequiresFact("e2fsck", "busybox", Timeout = 120_000)]
    public async Task A_directory_removed_or_replaced_between_entries_is_resolved_again()
    {
        // LayerApplier reuses the previous entry's parent while the directory part repeats;
        // a whiteout or a replacement of that directory must not leave later entries in it.
        byte[] lower = LayersImageSource.Tar(w =>
        {
            LayersImageSource.File(w, "a/b/one", "lower");
            LayersImageSource.File(w, "a/b/two", "lower");
        });
        byte[] upper = LayersImageSource.Tar(w =>
        {
            LayersImageSource.File(w, "a/b/three", "upper");
            LayersImageSource.File(w, "a/.wh.b", "");
            LayersImageSource.File(w, "a/b/four", "upper");
            LayersImageSource.File(w, "c/d/five", "upper");
            LayersImageSource.File(w, "c/d", "now a file");
            LayersImageSource.Dir(w, "c/d/");
            LayersImageSource.File(w, "c/d/six", "upper");
        });
        string output = await BuildCleanAsync(new LayersImageSource("cache", lower, upper), new RootfsBuildOptions { FreeBytes = 8 << 20 });
        string b = await E2fs.DebugfsAsync(output, "ls -l /a/b");
        Assert.Contains("four", b, StringComparison.Ordinal);
        Assert.DoesNotContain("one", b, StringComparison.Ordinal);
        Assert.DoesNotContain("three", b, StringComparison.Ordinal);
        string d = await E2fs.DebugfsAsync(output, "ls -l /c/d");
        Assert.Contains("six", d, StringComparison.Ordinal);
        Assert.DoesNotContain("five", d, StringComparison.Ordinal);
    }
}
