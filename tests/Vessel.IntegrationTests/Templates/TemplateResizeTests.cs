using Vessel.Nbd;

namespace Vessel.IntegrationTests.Templates;

/// <summary>
/// Build-from-template resize on a real layer store: e2fsprogs run on the copy-on-write
/// layer through nbdfuse; the new layer holds only changed blocks; e2fsck is the oracle.
/// </summary>
public sealed class TemplateResizeTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-resize-test-");

    public void Dispose() => _dir.Dispose();

    [RequiresFact("nbdfuse", "fusermount3", "resize2fs", "debugfs", "busybox-image", "root")]
    public async Task Grow_and_shrink_store_only_changed_blocks_and_keep_the_parents_files()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        CancellationToken ct = cts.Token;
        var (store, parent, work) = await ArrangeAsync(ct);
        IReadOnlyList<ProvisioningFile> files = Provisioning.Files(new ProvisioningOptions { Hostname = "child" });

        BuildHeader grown = await TemplateResize.BuildBaseAsync(store, parent.BuildId, 512L << 20, files, [], work, null, ct);
        Assert.Equal(512L << 20, grown.Size);
        Assert.Equal(parent.BuildId, grown.BaseBuildId);
        Assert.True(grown.DataLength < (8L << 20), $"the grown layer stores {grown.DataLength} bytes; only metadata and provisioning files changed");

        BuildHeader shrunk = await TemplateResize.BuildBaseAsync(store, grown.BuildId, 128L << 20, files, [], work, null, ct);
        Assert.Equal(128L << 20, shrunk.Size);

        foreach ((BuildHeader b, long size) in new[] { (grown, 512L << 20), (shrunk, 128L << 20) })
        {
            string flat = _dir.Combine($"{b.BuildId:N}.img");
            await store.FlattenAsync(b.BuildId, flat, null, ct);
            Assert.Null(await E2fs.CheckAsync(flat));
            string super = (await ExternalProcess.RunAsync("dumpe2fs", ["-h", flat], ct)).StandardOutput;
            Assert.Contains($"Block count:              {size / 4096}\n", super, StringComparison.Ordinal);
            Assert.Equal("child\n", System.Text.Encoding.ASCII.GetString(await E2fs.ReadFileAsync(flat, "/etc/hostname")));
            Assert.Equal(await E2fs.ReadFileAsync(_dir.Combine("parent.img"), "/bin/busybox"), await E2fs.ReadFileAsync(flat, "/bin/busybox"));
            Assert.Equal(await E2fs.ReadFileAsync(_dir.Combine("parent.img"), "/etc/vessel-test-release"), await E2fs.ReadFileAsync(flat, "/etc/vessel-test-release"));
        }
        AssertNothingLeft(work);
    }

    [RequiresFact("nbdfuse", "fusermount3", "resize2fs", "debugfs", "busybox-image", "root")]
    public async Task Shrinking_below_what_the_files_need_fails_saying_how_much_is_needed_and_leaves_nothing()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken ct = cts.Token;
        var (store, parent, work) = await ArrangeAsync(ct);
        IReadOnlyList<ProvisioningFile> files = Provisioning.Files(new ProvisioningOptions());
        int before = (await store.ListAsync(ct)).Count;

        VesselException e = await Assert.ThrowsAsync<VesselException>(
            () => TemplateResize.BuildBaseAsync(store, parent.BuildId, 4L << 20, files, [], work, null, ct));
        Assert.Equal(VesselErrorReason.NoSpace, e.Reason);
        Assert.Matches("need at least [0-9.]+ MiB .*set diskSize to [0-9]+M or more", e.Message);
        Assert.Equal(before, (await store.ListAsync(ct)).Count);
        AssertNothingLeft(work);
    }

    [RequiresFact("nbdfuse", "fusermount3", "resize2fs", "debugfs", "busybox-image", "root")]
    public async Task Cancellation_mid_resize_unmounts_and_removes_everything()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var (store, parent, work) = await ArrangeAsync(cts.Token);
        int before = (await store.ListAsync(cts.Token)).Count;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
        Task<BuildHeader> build = TemplateResize.BuildBaseAsync(store, parent.BuildId, 1L << 30, Provisioning.Files(new ProvisioningOptions()), [],
            work, step => { if (step.StartsWith("resizing", StringComparison.Ordinal)) { cancel.Cancel(); } }, cancel.Token);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => build);
        Assert.Equal(before, (await store.ListAsync(cts.Token)).Count);
        AssertNothingLeft(work);
    }

    /// <summary>A layer store in the test directory holding the busybox image on a 256 MiB disk (the parent), and an empty work directory.</summary>
    private async Task<(LayerStore Store, BuildHeader Parent, string Work)> ArrangeAsync(CancellationToken ct)
    {
        LayerStore store = LayerStore.OpenDirectory(_dir.Combine("blocks"));
        BuildHeader parent = await ImportBusyboxAsync(store, 256L << 20, ct);
        string work = _dir.Combine("work");
        Directory.CreateDirectory(work);
        return (store, parent, work);
    }

    internal static async Task<BuildHeader> ImportBusyboxAsync(LayerStore store, long size, CancellationToken ct, string? flatCopy = null)
    {
        string image = flatCopy ?? Path.Combine(Path.GetDirectoryName(store.Storage.Location)!, "parent.img");
        await using IImageSource source = await ImageSources.OpenAsync("tarball:" + TestImages.BusyboxTarball, new ImageSourceOptions(), ct);
        await RootfsBuilder.BuildAsync(source, image, new RootfsBuildOptions { SizeBytes = size }, null, ct);
        return await store.ImportAsync(image, cancellationToken: ct);
    }

    internal static void AssertNothingLeft(string work)
    {
        Assert.Empty(Directory.GetFileSystemEntries(work));
        Assert.DoesNotContain(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains(work, StringComparison.Ordinal));
    }
}
