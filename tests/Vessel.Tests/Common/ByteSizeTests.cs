namespace Vessel.Tests.Common;

public sealed class ByteSizeTests
{
    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("512M", 512L << 20)]
    [InlineData("2G", 2L << 30)]
    [InlineData("1.5G", 3L << 29)]
    [InlineData("64KiB", 64L << 10)]
    public void Parse_accepts_units(string text, long expected)
    {
        Assert.Equal(expected, ByteSize.Parse(text));
    }
}
