using System.Formats.Tar;

namespace Vessel.Tests.Ext4;

public sealed class ExtentTreeTests : IDisposable
{
    private const int Block = 4096;

    private readonly TempDirectory _dir = TempDirectory.Create();

    public void Dispose() => _dir.Dispose();

    /// <summary>
    /// A file of <paramref name="extents"/> one-block extents: every other block holds data, the
    /// blocks between are zeros, which the writer turns into holes.
    /// </summary>
    private static byte[] Fragmented(int extents)
    {
        var data = new byte[((2 * extents) - 1) * Block];
        for (int i = 0; i < extents; i++)
        {
            data.AsSpan(2 * i * Block, Block).Fill((byte)(1 + (i % 251)));
        }
        return data;
    }

    [RequiresFact("e2fsck", "debugfs", Timeout = 120_000)]
    public async Task Files_of_4_300_and_2000_extents_get_trees_of_depth_0_1_and_2_that_e2fsck_accepts()
    {
        var files = new Dictionary<string, byte[]> { ["inline"] = Fragmented(4), ["leaves"] = Fragmented(300), ["indexed"] = Fragmented(2000) };
        byte[] layer = LayersImageSource.Tar(w =>
        {
            foreach ((string name, byte[] data) in files)
            {
                w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data), Mode = (UnixFileMode)0x1A4 });
            }
        });
        string image = _dir.Combine("rootfs.ext4");
        await RootfsBuilder.BuildAsync(new LayersImageSource("fragmented", layer), image, new RootfsBuildOptions { Provision = false, FreeBytes = 8 << 20 }, null, CancellationToken.None);

        string? fsck = await E2fs.CheckAsync(image);
        Assert.True(fsck is null, fsck);
        foreach ((string name, byte[] data) in files)
        {
            Assert.Equal(data, await E2fs.ReadFileAsync(image, "/" + name));
        }
        // debugfs marks tree blocks "(ETBn)", n the level of the index entry that points to them.
        string inline = await E2fs.DebugfsAsync(image, "stat /inline");
        string leaves = await E2fs.DebugfsAsync(image, "stat /leaves");
        string indexed = await E2fs.DebugfsAsync(image, "stat /indexed");
        Assert.DoesNotContain("(ETB", inline, StringComparison.Ordinal);
        Assert.Contains("(ETB0)", leaves, StringComparison.Ordinal);
        Assert.DoesNotContain("(ETB1)", leaves, StringComparison.Ordinal);
        Assert.Contains("(ETB1)", indexed, StringComparison.Ordinal);
    }
}
