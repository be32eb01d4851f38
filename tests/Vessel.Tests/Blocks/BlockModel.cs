namespace Vessel.Tests.Blocks;

/// <summary>The byte-array model the block property tests check devices against (overlays, layer sessions).</summary>
internal static class BlockModel
{
    public const int BlockSize = 4096;

    /// <summary>Seeds 1 to <paramref name="count"/>, for a property theory's <c>[MemberData]</c>.</summary>
    public static TheoryData<int> Seeds(int count)
    {
        var seeds = new TheoryData<int>();
        for (int seed = 1; seed <= count; seed++)
        {
            seeds.Add(seed);
        }
        return seeds;
    }

    /// <summary>
    /// A base image of <paramref name="blocks"/> blocks, random data in about a third of them and
    /// zeros elsewhere, written to <paramref name="path"/> and imported into <paramref name="store"/>.
    /// </summary>
    public static async Task<(byte[] Image, BuildHeader Header)> ImportRandomImageAsync(LayerStore store, Random rng, int blocks, string path, CancellationToken cancellationToken)
    {
        byte[] image = new byte[blocks * BlockSize];
        for (int b = 0; b < blocks; b++)
        {
            if (rng.Next(3) == 0)
            {
                rng.NextBytes(image.AsSpan(b * BlockSize, BlockSize));
            }
        }
        await File.WriteAllBytesAsync(path, image, cancellationToken);
        return (image, await store.ImportAsync(path, BlockSize, null, cancellationToken));
    }

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="offset"/> and asserts them block by block against the model, naming the first block that differs.</summary>
    public static async Task AssertBlocksAsync(IBlockDevice device, byte[] model, int offset, int length, string what)
    {
        byte[] got = new byte[length];
        await device.ReadAsync(offset, got, CancellationToken.None);
        for (int b = 0; b < length / BlockSize; b++)
        {
            Assert.True(got.AsSpan(b * BlockSize, BlockSize).SequenceEqual(model.AsSpan(offset + (b * BlockSize), BlockSize)), $"{what}: block {b} differs");
        }
    }
}
