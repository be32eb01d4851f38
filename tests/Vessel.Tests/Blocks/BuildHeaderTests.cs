namespace Vessel.Tests.Blocks;

public sealed class BuildHeaderTests
{
    private static BuildHeader Sample()
    {
        var id = Guid.NewGuid();
        return new BuildHeader
        {
            BlockSize = 4096,
            Size = 16 * 4096,
            Generation = 1,
            BuildId = id,
            BaseBuildId = Guid.NewGuid(),
            DataLength = 8192,
            DataSha256 = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray(),
            Mapping =
            [
                BuildMappingEntry.Zero(0, 4096),
                new BuildMappingEntry(4096, 8192, id, 0),
                new BuildMappingEntry(12288, 53248, Guid.NewGuid(), 40960),
            ],
        };
    }

    [Fact]
    public void Header_round_trips_through_bytes()
    {
        BuildHeader h = Sample();
        byte[] bytes = h.ToBytes();
        Assert.Equal(BuildHeader.MetadataSize + (3 * BuildMappingEntry.Size) + BuildHeader.TrailerSize, bytes.Length);
        BuildHeader back = BuildHeader.Read(bytes);
        Assert.Equal(h.BuildId, back.BuildId);
        Assert.Equal(h.BaseBuildId, back.BaseBuildId);
        Assert.Equal(h.Generation, back.Generation);
        Assert.Equal(h.DataSha256, back.DataSha256);
        Assert.Equal(h.Mapping, back.Mapping);
    }

    [Fact]
    public void Header_layout_matches_the_documented_offsets()
    {
        BuildHeader h = Sample();
        byte[] bytes = h.ToBytes();
        Assert.Equal("VSLBUILD"u8.ToArray(), bytes[..8]);
        Assert.Equal(1u, BitConverter.ToUInt32(bytes, 8));
        Assert.Equal(4096, BitConverter.ToInt32(bytes, 12));
        Assert.Equal(h.Size, BitConverter.ToInt64(bytes, 16));
        Assert.Equal(h.BuildId, new Guid(bytes.AsSpan(32, 16), bigEndian: true));
        Assert.Equal(3, BitConverter.ToInt32(bytes, 104));
        Assert.Equal(4096L, BitConverter.ToInt64(bytes, 112 + 40)); // second entry's offset
    }

    [Fact]
    public void Read_rejects_a_flipped_byte()
    {
        byte[] bytes = Sample().ToBytes();
        bytes[120] ^= 1;
        var e = Assert.Throws<InvalidDataException>(() => BuildHeader.Read(bytes));
        Assert.Contains("checksum", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Read_rejects_an_unknown_version()
    {
        byte[] bytes = Sample().ToBytes();
        bytes[8] = 9;
        var e = Assert.Throws<InvalidDataException>(() => BuildHeader.Read(bytes));
        Assert.Contains("version 9", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ToBytes_rejects_a_mapping_with_a_gap()
    {
        BuildHeader h = Sample() with { Mapping = [BuildMappingEntry.Zero(0, 4096), BuildMappingEntry.Zero(8192, 57344)] };
        var e = Assert.Throws<InvalidDataException>(() => h.ToBytes());
        Assert.Contains("gap", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Merge_lays_dirty_extents_over_the_parent_and_coalesces()
    {
        var a = Guid.NewGuid();
        var b = Guid.NewGuid();
        BuildMappingEntry[] parent = [new(0, 40960, a, 0)];
        BuildMappingEntry[] dirty = [new(4096, 4096, b, 0), BuildMappingEntry.Zero(8192, 4096), new(12288, 4096, b, 4096)];
        List<BuildMappingEntry> merged = BuildMapping.Merge(parent, dirty);
        Assert.Equal(
            [
                new BuildMappingEntry(0, 4096, a, 0),
                new BuildMappingEntry(4096, 4096, b, 0),
                BuildMappingEntry.Zero(8192, 4096),
                new BuildMappingEntry(12288, 4096, b, 4096),
                new BuildMappingEntry(16384, 24576, a, 16384),
            ],
            merged);
    }
}
