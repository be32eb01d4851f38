namespace Vessel.Tests.Blocks;

/// <summary>The object store's chunk index and bucket addresses, including damaged and hostile forms.</summary>
public sealed class ChunkIndexTests
{
    private static ChunkIndex Sample(long length = (3 << 16) + 100) => new()
    {
        BuildId = Guid.NewGuid(),
        ChunkSize = 1 << 16,
        DataLength = length,
        DataSha256 = RandomNumberGenerator.GetBytes(32),
        ChunkSha256 = Enumerable.Range(0, ChunkIndex.CountFor(length, 1 << 16)).Select(_ => RandomNumberGenerator.GetBytes(32)).ToList(),
    };

    [Fact]
    public void An_index_reads_back_as_written()
    {
        ChunkIndex index = Sample();
        ChunkIndex back = ChunkIndex.Read(index.ToBytes(), "test");
        Assert.Equal(index.BuildId, back.BuildId);
        Assert.Equal(4, back.ChunkCount);
        Assert.Equal(100, back.LengthOf(3));
        Assert.Equal(1 << 16, back.LengthOf(0));
        Assert.Equal(index.DataSha256, back.DataSha256);
        Assert.Equal(index.ChunkSha256[2], back.ChunkSha256[2]);
    }

    [Fact]
    public void An_empty_build_has_no_chunks()
    {
        Assert.Equal(0, ChunkIndex.Read(Sample(0).ToBytes(), "test").ChunkCount);
    }

    [Fact]
    public void Every_flipped_byte_is_refused_as_corrupt()
    {
        byte[] bytes = Sample().ToBytes();
        for (int i = 0; i < bytes.Length; i += 7)
        {
            byte[] copy = (byte[])bytes.Clone();
            copy[i] ^= 0x40;
            var e = Assert.Throws<VesselException>(() => ChunkIndex.Read(copy, "the index"));
            Assert.Equal(VesselErrorReason.Corrupt, e.Reason);
            Assert.StartsWith("the index ", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void A_truncated_or_padded_index_is_refused()
    {
        byte[] bytes = Sample().ToBytes();
        Assert.Throws<VesselException>(() => ChunkIndex.Read(bytes.AsSpan(0, 50), "x"));
        Assert.Throws<VesselException>(() => ChunkIndex.Read(bytes.AsSpan(0, bytes.Length - 32), "x"));
        Assert.Throws<VesselException>(() => ChunkIndex.Read([.. bytes, 0], "x"));
    }

    [Fact]
    public void A_count_that_disagrees_with_the_length_is_refused_even_with_a_good_checksum()
    {
        ChunkIndex index = Sample();
        ChunkIndex lying = new()
        {
            BuildId = index.BuildId,
            ChunkSize = index.ChunkSize,
            DataLength = index.DataLength * 100,
            DataSha256 = index.DataSha256,
            ChunkSha256 = index.ChunkSha256,
        };
        var e = Assert.Throws<VesselException>(() => ChunkIndex.Read(lying.ToBytes(), "x"));
        Assert.Contains("lists 4 chunks", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("s3://vessel", "vessel", "")]
    [InlineData("s3://vessel/", "vessel", "")]
    [InlineData("s3://my.bucket-1/a/b", "my.bucket-1", "a/b/")]
    public void Bucket_addresses_parse(string url, string bucket, string prefix)
    {
        Assert.Equal((bucket, prefix), S3StoreOptions.Parse(url));
    }
}
