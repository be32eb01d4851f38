using System.Buffers.Binary;
using Vessel.Ext4;

namespace Vessel.Tests.Ext4;

public sealed class Ext4HashTests
{
    [RequiresTheory("debugfs", Timeout = 60_000)]
    [InlineData("hello")]
    [InlineData("a")]
    [InlineData("file-with-a-longer-name-000123")]
    [InlineData("a-name-that-is-definitely-longer-than-thirty-two-bytes-so-it-takes-two-rounds.txt")]
    public async Task HalfMd4_matches_debugfs(string name)
    {
        var seed = Guid.Parse("01234567-89ab-cdef-0123-456789abcdef");
        byte[] seedBytes = seed.ToByteArray(bigEndian: true);
        uint[] words = [.. Enumerable.Range(0, 4).Select(i => BinaryPrimitives.ReadUInt32LittleEndian(seedBytes.AsSpan(i * 4)))];
        var r = await ExternalProcess.RunAsync("debugfs", ["-R", $"dx_hash -h half_md4 -s {seed} {name}", "/dev/null"], CancellationToken.None);
        string line = r.StandardOutput.Split('\n').First(l => l.StartsWith("Hash of", StringComparison.Ordinal));
        uint expected = Convert.ToUInt32(line.Split(' ')[4], 16);
        Assert.Equal(expected, Ext4Hash.HalfMd4(Encoding.ASCII.GetBytes(name), words));
    }

    [Fact]
    public void HalfMd4_without_seed_uses_md4_initial_values()
    {
        uint a = Ext4Hash.HalfMd4("x"u8, [0, 0, 0, 0]);
        uint b = Ext4Hash.HalfMd4("x"u8, []);
        Assert.Equal(a, b);
        Assert.Equal(0u, a & 1);
    }
}
