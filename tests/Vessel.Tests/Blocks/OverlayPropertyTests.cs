namespace Vessel.Tests.Blocks;

/// <summary>Random writes, trims and zeroes over random chains of builds, checked block by block against a byte array.</summary>
public sealed class OverlayPropertyTests : IDisposable
{
    private const int BlockSize = BlockModel.BlockSize;
    private const int Blocks = 96;
    private const int Size = BlockSize * Blocks;
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-overlay-test-");

    public void Dispose() => _dir.Dispose();

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(BlockModel.Seeds), 6, MemberType = typeof(BlockModel))]
    public async Task Random_operations_over_random_chains_match_a_plain_model(int seed)
    {
        var rng = new Random(seed);
        var ct = CancellationToken.None;
        LayerStore store = LayerStore.OpenDirectory(_dir.Combine("store"));

        (byte[] model, BuildHeader current) = await BlockModel.ImportRandomImageAsync(store, rng, Blocks, _dir.Combine($"base-{seed}.raw"), ct);

        int depth = rng.Next(2, 7);
        for (int layer = 0; layer < depth; layer++)
        {
            // Sometimes a fresh store instance, so data files are verified from disk again.
            if (rng.Next(2) == 0)
            {
                store = LayerStore.OpenDirectory(_dir.Combine("store"));
            }
            using Build build = await store.OpenAsync(current.BuildId, ct);
            await AssertMatchesAsync(build, model, $"seed {seed}, layer {layer} before writes");
            using OverlayDevice overlay = OverlayDevice.Create(build, _dir.Combine("work"));
            var dirty = new HashSet<int>();
            int ops = rng.Next(5, 40);
            for (int i = 0; i < ops; i++)
            {
                int offset = rng.Next(Size);
                int length = rng.Next(1, Math.Min(Size - offset, 3 * BlockSize) + 1);
                if (rng.Next(4) == 0)
                {
                    // Whole-block aligned ops are common in practice.
                    offset -= offset % BlockSize;
                    length = Math.Min(Size - offset, BlockSize * rng.Next(1, 4));
                }
                int op = rng.Next(4);
                if (op < 2)
                {
                    byte[] data = new byte[length];
                    rng.NextBytes(data);
                    await overlay.WriteAsync(offset, data, ct);
                    data.CopyTo(model, offset);
                }
                else
                {
                    if (op == 2)
                    {
                        await overlay.TrimAsync(offset, length, ct);
                    }
                    else
                    {
                        await overlay.WriteZeroesAsync(offset, length, ct);
                    }
                    Array.Clear(model, offset, length);
                }
                for (int b = offset / BlockSize; b <= (offset + length - 1) / BlockSize; b++)
                {
                    dirty.Add(b);
                }
                if (rng.Next(4) == 0)
                {
                    int ro = rng.Next(Size);
                    int rl = rng.Next(1, Size - ro + 1);
                    byte[] got = new byte[rl];
                    await overlay.ReadAsync(ro, got, ct);
                    Assert.True(got.AsSpan().SequenceEqual(model.AsSpan(ro, rl)), $"seed {seed}: overlay read {ro}+{rl} differs from the model");
                    AssertCachedReadMatches(overlay, model, ro, rl, $"seed {seed}: overlay");
                }
            }
            await AssertMatchesAsync(overlay, model, $"seed {seed}, layer {layer} overlay");
            AssertExtentsAgree(overlay, model);

            BuildHeader exported = await overlay.ExportAsync(store, null, ct);
            Assert.Equal(current.Generation + 1, exported.Generation);
            Assert.Equal(current.BuildId, exported.BaseBuildId);
            Assert.True(exported.DataLength <= (long)dirty.Count * BlockSize, "the export stores no more than the dirty blocks");
            current = exported;
        }

        LayerStore fresh = LayerStore.OpenDirectory(_dir.Combine("store"));
        using (Build last = await fresh.OpenAsync(current.BuildId, ct))
        {
            await AssertMatchesAsync(last, model, $"seed {seed}, final build");
        }
        string flat = _dir.Combine($"flat-{seed}.raw");
        await fresh.FlattenAsync(current.BuildId, flat, null, ct);
        byte[] flattened = await File.ReadAllBytesAsync(flat, ct);
        Assert.True(model.AsSpan().SequenceEqual(flattened), $"seed {seed}: flattened image differs from the model");
    }

    [Fact(Timeout = 60_000)]
    public async Task Export_stores_only_the_written_blocks_of_a_large_device()
    {
        var ct = CancellationToken.None;
        LayerStore store = LayerStore.OpenDirectory(_dir.Combine("store"));
        string image = _dir.Combine("big.raw");
        using (var f = File.Create(image))
        {
            f.SetLength(1L << 30); // 1 GiB of holes: import and export must not cost O(size) in storage
        }
        BuildHeader baseHeader = await store.ImportAsync(image, BlockSize, null, ct);
        Assert.Equal(0, baseHeader.DataLength);
        using Build build = await store.OpenAsync(baseHeader.BuildId, ct);
        using OverlayDevice overlay = OverlayDevice.Create(build, _dir.Combine("work"));
        byte[] data = new byte[3 * BlockSize];
        new Random(7).NextBytes(data);
        await overlay.WriteAsync(500L << 20, data, ct); // 3 blocks
        await overlay.WriteAsync((900L << 20) + 100, data.AsMemory(0, 10), ct); // 1 partial block
        BuildHeader exported = await overlay.ExportAsync(store, null, ct);
        Assert.Equal(4 * BlockSize, exported.DataLength);
        Assert.Equal(4 * BlockSize, new FileInfo(Path.Combine(_dir.Combine("store"), "builds", exported.BuildId.ToString(), "data")).Length);
    }

    private static async Task AssertMatchesAsync(IBlockDevice device, byte[] model, string what)
    {
        await BlockModel.AssertBlocksAsync(device, model, 0, model.Length, what);
        AssertCachedReadMatches(device, model, 0, model.Length, what);
    }

    /// <summary>
    /// The NBD server's fast path: a cached read may decline (a filesystem without RWF_NOWAIT,
    /// an evicted page), but what it returns must be exactly what ReadAsync returns.
    /// </summary>
    private static void AssertCachedReadMatches(IBlockDevice device, byte[] model, int offset, int length, string what)
    {
        byte[] got = new byte[length];
        if (device.TryReadCached(offset, got))
        {
            Assert.True(got.AsSpan().SequenceEqual(model.AsSpan(offset, length)), $"{what}: cached read {offset}+{length} differs from the model");
        }
        // The sendfile path: the file stretches and zeros, in order, must spell the same bytes.
        var ranges = new List<FileRange>();
        if (device.TryGetCachedFileRanges(offset, length, ranges))
        {
            byte[] spelled = new byte[length];
            int at = 0;
            foreach (FileRange r in ranges)
            {
                if (r.File is not null)
                {
                    Assert.Equal(r.Length, RandomAccess.Read(r.File, spelled.AsSpan(at, r.Length), r.Offset));
                }
                at += r.Length;
            }
            Assert.Equal(length, at);
            Assert.True(spelled.AsSpan().SequenceEqual(model.AsSpan(offset, length)), $"{what}: file ranges for {offset}+{length} differ from the model");
        }
    }

    /// <summary>Every extent reported as zero must read as zeros.</summary>
    private static void AssertExtentsAgree(IBlockDevice device, byte[] model)
    {
        long at = 0;
        foreach (DeviceExtent e in device.GetExtents(0, model.Length, int.MaxValue))
        {
            if (e.Kind == ExtentKind.Zero)
            {
                Assert.False(model.AsSpan((int)at, (int)e.Length).ContainsAnyExcept((byte)0), $"extent at {at} is reported zero but holds data");
            }
            at += e.Length;
        }
        Assert.Equal(model.Length, at);
    }
}
