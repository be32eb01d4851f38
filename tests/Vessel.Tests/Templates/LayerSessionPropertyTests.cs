using Vessel.Tests.Blocks;

namespace Vessel.Tests.Templates;

/// <summary>
/// Random phases of writes, zero-block writes, trims and zeroes over a layer session (grown,
/// shrunk or kept at its parent's size), each phase exported as a layer, checked against a
/// byte array: the session reads as the model, each layer holds the model cut to the target
/// size, and stores no more than the blocks written in its own phase.
/// </summary>
public sealed class LayerSessionPropertyTests : IDisposable
{
    private const int BlockSize = BlockModel.BlockSize;
    private const int ParentBlocks = 80;
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-session-test-");

    public void Dispose() => _dir.Dispose();

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(BlockModel.Seeds), 8, MemberType = typeof(BlockModel))]
    public async Task Phases_exported_as_layers_match_a_byte_array_model(int seed)
    {
        var rng = new Random(seed);
        var ct = CancellationToken.None;
        string storePath = _dir.Combine("store");
        LayerStore store = LayerStore.OpenDirectory(storePath);
        (byte[] parentImage, BuildHeader parent) = await BlockModel.ImportRandomImageAsync(store, rng, ParentBlocks, _dir.Combine($"parent-{seed}.raw"), ct);

        // Same size, grown or shrunk; the device is the larger of parent and target.
        int targetBlocks = (seed % 3) switch { 0 => ParentBlocks, 1 => ParentBlocks + rng.Next(1, 60), _ => ParentBlocks - rng.Next(1, 40) };
        long target = (long)targetBlocks * BlockSize;
        int deviceSize = Math.Max(targetBlocks, ParentBlocks) * BlockSize;
        byte[] model = new byte[deviceSize];
        parentImage.CopyTo(model, 0);

        using LayerSession session = await LayerSession.OpenAsync(store, parent.BuildId, target, _dir.Combine("work"), ct);
        Assert.Equal(deviceSize, session.Size);
        Assert.False(session.HasPendingChanges);
        await BlockModel.AssertBlocksAsync(session, model, 0, deviceSize, $"seed {seed}: fresh session");

        BuildHeader previous = parent;
        int phases = rng.Next(2, 6);
        for (int phase = 0; phase < phases; phase++)
        {
            var written = new HashSet<int>();
            int ops = rng.Next(0, 25);
            for (int i = 0; i < ops; i++)
            {
                await RandomOperationAsync(session, model, rng, written);
            }
            Assert.Equal(written.Count > 0, session.HasPendingChanges);
            Assert.True(session.PendingDataBytes <= (long)written.Count * BlockSize, $"seed {seed} phase {phase}: pending data counts only this phase's written blocks");
            await BlockModel.AssertBlocksAsync(session, model, 0, deviceSize, $"seed {seed} phase {phase}: session");

            BuildHeader layer = await session.ExportAsync(ct);
            Assert.Equal(previous.BuildId, layer.BaseBuildId);
            Assert.Equal(previous.Generation + 1, layer.Generation);
            Assert.Equal(target, layer.Size);
            Assert.True(layer.DataLength <= (long)written.Count(b => b < targetBlocks) * BlockSize,
                $"seed {seed} phase {phase}: the layer stores {layer.DataLength} bytes, more than the {written.Count} blocks written in its phase");
            Assert.Equal(layer.BuildId, session.Current.BuildId);
            Assert.False(session.HasPendingChanges);
            Assert.Equal(0, session.PendingDataBytes);

            LayerStore fresh = LayerStore.OpenDirectory(storePath);
            using (Build reopened = await fresh.OpenAsync(layer.BuildId, ct))
            {
                await BlockModel.AssertBlocksAsync(reopened, model, 0, (int)target, $"seed {seed} phase {phase}: layer");
            }
            previous = layer;
        }

        string flat = _dir.Combine($"flat-{seed}.raw");
        await LayerStore.OpenDirectory(storePath).FlattenAsync(previous.BuildId, flat, null, ct);
        byte[] flattened = await File.ReadAllBytesAsync(flat, ct);
        Assert.True(model.AsSpan(0, (int)target).SequenceEqual(flattened), $"seed {seed}: the flattened last layer differs from the model");
    }

    [Fact(Timeout = 60_000)]
    public async Task Whole_blocks_of_zeros_are_recorded_as_zero_extents_not_stored()
    {
        var ct = CancellationToken.None;
        LayerStore store = LayerStore.OpenDirectory(_dir.Combine("store"));
        byte[] data = new byte[ParentBlocks * BlockSize];
        new Random(3).NextBytes(data);
        string image = _dir.Combine("parent.raw");
        await File.WriteAllBytesAsync(image, data, ct);
        BuildHeader parent = await store.ImportAsync(image, BlockSize, null, ct);
        using LayerSession session = await LayerSession.OpenAsync(store, parent.BuildId, null, _dir.Combine("work"), ct);

        await session.WriteAsync(8 * BlockSize, new byte[16 * BlockSize], ct);
        Assert.True(session.HasPendingChanges);
        Assert.Equal(0, session.PendingDataBytes);
        BuildHeader layer = await session.ExportAsync(ct);

        Assert.Equal(0, layer.DataLength);
        Assert.Contains(layer.Mapping, e => e.IsZero && e.Offset == 8 * BlockSize && e.Length == 16 * BlockSize);
    }

    private static async Task RandomOperationAsync(LayerSession session, byte[] model, Random rng, HashSet<int> written)
    {
        var ct = CancellationToken.None;
        int size = model.Length;
        int offset = rng.Next(size);
        int length = rng.Next(1, Math.Min(size - offset, 3 * BlockSize) + 1);
        if (rng.Next(3) == 0)
        {
            offset -= offset % BlockSize;
            length = Math.Min(size - offset, BlockSize * rng.Next(1, 4));
        }
        switch (rng.Next(5))
        {
            case 0:
            case 1:
                byte[] data = new byte[length];
                rng.NextBytes(data);
                await session.WriteAsync(offset, data, ct);
                data.CopyTo(model, offset);
                break;
            case 2:
                // Zeros written as data: whole aligned blocks of them are kept as zero extents.
                await session.WriteAsync(offset, new byte[length], ct);
                Array.Clear(model, offset, length);
                break;
            case 3:
                await session.TrimAsync(offset, length, ct);
                Array.Clear(model, offset, length);
                break;
            default:
                await session.WriteZeroesAsync(offset, length, ct);
                Array.Clear(model, offset, length);
                break;
        }
        for (int b = offset / BlockSize; b <= (offset + length - 1) / BlockSize; b++)
        {
            written.Add(b);
        }
    }
}
