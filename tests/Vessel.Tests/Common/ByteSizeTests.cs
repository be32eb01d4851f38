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

    [Theory]
    [InlineData("")]
    [InlineData("12X")]
    [InlineData("-1G")]
    [InlineData("99999999999T")]
    public void Parse_rejects_garbage_with_a_message(string text)
    {
        var e = Assert.Throws<VesselException>(() => ByteSize.Parse(text));
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
    }
}
