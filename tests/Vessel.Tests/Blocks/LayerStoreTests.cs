namespace Vessel.Tests.Blocks;

public sealed class LayerStoreTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-blocks-test-");

    public void Dispose() => _dir.Dispose();

    private string MakeImage(long size, params (long Offset, int Length)[] randomRanges)
    {
        string path = _dir.Combine($"img-{Guid.NewGuid():N}.raw");
        using var f = new FileStream(path, FileMode.CreateNew);
        f.SetLength(size);
        var rng = new Random(42);
        foreach ((long offset, int length) in randomRanges)
        {
            byte[] data = new byte[length];
            rng.NextBytes(data);
            f.Position = offset;
            f.Write(data);
        }
        return path;
    }

    [Fact(Timeout = 30_000)]
    public async Task Import_stores_only_non_zero_blocks_and_flatten_gives_the_image_back()
    {
        string image = MakeImage(4 << 20, (0, 4096), (1 << 20, 10000), (3 << 20, 4096));
        LayerStore store = LayerStore.OpenDirectory(_dir.Combine("store"));
        BuildHeader h = await store.ImportAsync(image);
        Assert.Equal(0ul, h.Generation);
        Assert.Equal(4096 + (3 * 4096) + 4096, h.DataLength); // 10000 bytes straddle 3 blocks
        Assert.Equal(4 << 20, h.Size);

        string flat = _dir.Combine("flat.raw");
        await store.FlattenAsync(h.BuildId, flat);
        Assert.Equal(File.ReadAllBytes(image), File.ReadAllBytes(flat));
    }

    [Fact(Timeout = 30_000)]
    public async Task Import_rejects_a_size_that_is_not_whole_blocks()
    {
        string image = MakeImage(4097);
        LayerStore store = LayerStore.OpenDirectory(_dir.Combine("store"));
        var e = await Assert.ThrowsAsync<VesselException>(() => store.ImportAsync(image));
        Assert.Contains("4097 bytes", e.Message, StringComparison.Ordinal);
        Assert.Empty(await store.ListAsync(CancellationToken.None));
    }

    [Fact(Timeout = 30_000)]
    public async Task Open_detects_a_corrupted_data_file()
    {
        string image = MakeImage(1 << 20, (0, 65536));
        string root = _dir.Combine("store");
        BuildHeader h = await LayerStore.OpenDirectory(root).ImportAsync(image);
        string data = Path.Combine(root, "builds", h.BuildId.ToString(), "data");
        using (var f = new FileStream(data, FileMode.Open))
        {
            f.Position = 1000;
            int b = f.ReadByte();
            f.Position = 1000;
            f.WriteByte((byte)(b ^ 0xff));
        }
        var fresh = LayerStore.OpenDirectory(root); // a new instance verifies from scratch
        var e = await Assert.ThrowsAsync<VesselException>(() => fresh.OpenAsync(h.BuildId, CancellationToken.None));
        Assert.Equal(VesselErrorReason.Corrupt, e.Reason);
        Assert.Contains("SHA-256", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task An_unfinished_upload_is_invisible_and_removed_once_its_owner_is_gone()
    {
        string root = _dir.Combine("store");
        LayerStore store = LayerStore.OpenDirectory(root);
        await using (StagedBuild staged = await store.BeginAsync(Guid.NewGuid(), CancellationToken.None))
        {
            await staged.AppendAsync(new byte[4096], CancellationToken.None);
            Assert.Empty(await store.ListAsync(CancellationToken.None));
        }
        // Disposed without commit: the staging directory is gone.
        Assert.Empty(Directory.GetDirectories(Path.Combine(root, "staging")));

        // A crashed process's leftover (a pid that is not running) is removed on open.
        string leftover = Path.Combine(root, "staging", $"{Guid.NewGuid():D}.999999999.abc");
        Directory.CreateDirectory(leftover);
        File.WriteAllBytes(Path.Combine(leftover, "data"), new byte[10]);
        LayerStore reopened = LayerStore.OpenDirectory(root);
        Assert.False(Directory.Exists(leftover));
        Assert.Empty(await reopened.ListAsync(CancellationToken.None));
    }

    [Fact(Timeout = 30_000)]
    public async Task Delete_refuses_a_build_that_another_uses()
    {
        string image = MakeImage(1 << 20, (0, 65536));
        LayerStore store = LayerStore.OpenDirectory(_dir.Combine("store"));
        BuildHeader baseHeader = await store.ImportAsync(image);
        BuildHeader child;
        using (Build b = await store.OpenAsync(baseHeader.BuildId, CancellationToken.None))
        using (OverlayDevice o = OverlayDevice.Create(b, _dir.Combine("work")))
        {
            await o.WriteAsync(65536, new byte[] { 1, 2, 3 }, CancellationToken.None);
            child = await o.ExportAsync(store);
        }
        var e = await Assert.ThrowsAsync<VesselException>(() => store.DeleteAsync(baseHeader.BuildId, CancellationToken.None));
        Assert.Equal(VesselErrorReason.Conflict, e.Reason);
        await store.DeleteAsync(child.BuildId, CancellationToken.None);
        await store.DeleteAsync(baseHeader.BuildId, CancellationToken.None);
        Assert.Empty(await store.ListAsync(CancellationToken.None));
    }

    /// <summary>A 1 MiB image with data in its first 64 KiB, imported into the store at <paramref name="root"/>: its header, data file and verified-stamp path.</summary>
    private async Task<(BuildHeader Header, string Data, string Stamp)> ImportStampedAsync(string root, CancellationToken ct)
    {
        BuildHeader h = await Store(root).ImportAsync(MakeImage(1 << 20, (0, 65536)), cancellationToken: ct);
        string build = Path.Combine(root, "builds", h.BuildId.ToString());
        return (h, Path.Combine(build, "data"), Path.Combine(build, "verified"));
    }

    [Fact(Timeout = 30_000)]
    public async Task A_verified_stamp_is_saved_only_for_a_settled_file_and_a_changed_file_is_still_caught()
    {
        var ct = CancellationToken.None;
        string root = _dir.Combine("store");
        (BuildHeader h, string data, string stamp) = await ImportStampedAsync(root, ct);

        // A data file changed moments ago may still change within the same timestamp tick: no stamp.
        using (await Store(root).OpenAsync(h.BuildId, ct))
        {
        }
        Assert.False(File.Exists(stamp));

        // Once it has settled, the hash that passes is saved beside the build.
        using (await Store(root, new LaterClock(TimeSpan.FromHours(1))).OpenAsync(h.BuildId, ct))
        {
        }
        Assert.True(File.Exists(stamp));
        Assert.Equal(VerifiedStamp.Size, new FileInfo(stamp).Length);

        // A write through the filesystem moves the data file's ctime, so the stamp no longer vouches.
        FlipByte(data, 1000);
        var e = await Assert.ThrowsAsync<VesselException>(() => Store(root, new LaterClock(TimeSpan.FromHours(1))).OpenAsync(h.BuildId, ct));
        Assert.Equal(VesselErrorReason.Corrupt, e.Reason);
        Assert.False(File.Exists(stamp)); // a failed hash removes the stamp
    }

    [Fact(Timeout = 30_000)]
    public async Task A_matching_stamp_skips_the_hash_but_verify_still_reads_everything()
    {
        var ct = CancellationToken.None;
        string root = _dir.Combine("store");
        (BuildHeader h, string data, string stamp) = await ImportStampedAsync(root, ct);
        using (await Store(root, new LaterClock(TimeSpan.FromHours(1))).OpenAsync(h.BuildId, ct))
        {
        }

        // Damage the filesystem cannot see (a media error) leaves the identity alone: simulate it
        // by corrupting the file and re-stamping its new identity.
        FlipByte(data, 1000);
        VerifiedStamp old = VerifiedStamp.TryRead(await File.ReadAllBytesAsync(stamp, ct)) ?? throw new InvalidDataException("no stamp");
        using (var handle = File.OpenHandle(data))
        {
            byte[] forged = new byte[VerifiedStamp.Size];
            (old with { Data = LinuxFile.TryGetIdentity(handle)!.Value }).Write(forged);
            await File.WriteAllBytesAsync(stamp, forged, ct);
        }
        using (await Store(root).OpenAsync(h.BuildId, ct))
        {
            // Opened without hashing: the stamp vouched for the file.
        }
        var e = await Assert.ThrowsAsync<VesselException>(() => Store(root).VerifyAsync(h.BuildId, ct));
        Assert.Equal(VesselErrorReason.Corrupt, e.Reason);
        Assert.False(File.Exists(stamp));
        await Assert.ThrowsAsync<VesselException>(() => Store(root).OpenAsync(h.BuildId, ct));
    }

    private static LayerStore Store(string root, TimeProvider? time = null) => new(new LocalLayerStorage(root), null, time);

    private static void FlipByte(string path, long offset)
    {
        using var f = new FileStream(path, FileMode.Open);
        f.Position = offset;
        int b = f.ReadByte();
        f.Position = offset;
        f.WriteByte((byte)(b ^ 0xff));
    }
}
