using Vessel.Vmm;

namespace Vessel.Tests.Common;

/// <summary>
/// Every parser of text a user gives refuses malformed text the same way: a <see cref="VesselException"/>
/// with <see cref="VesselErrorReason.InvalidInput"/>, and where the parser promises it, the text named
/// in the message. One table for all of them (each parser's accepted forms stay with its own tests).
/// </summary>
public sealed class MalformedInputTests
{
    private static readonly Dictionary<string, Action<string>> s_parsers = new(StringComparer.Ordinal)
    {
        ["bucket address"] = text => S3StoreOptions.Parse(text),
        ["byte size"] = text => ByteSize.Parse(text),
        ["registry reference"] = text => RegistryReference.Parse(text),
        ["network rule"] = text => NetworkRule.Parse(text),
        ["image path"] = text => ImagePath.CleanRequested(text),
    };

    [Theory]
    [InlineData("bucket address", "/var/lib/vessel/blocks", "/var/lib/vessel/blocks")]
    [InlineData("bucket address", "s3://", "s3://")]
    [InlineData("bucket address", "s3://UPPER", "s3://UPPER")]
    [InlineData("bucket address", "s3://ab", "s3://ab")]
    [InlineData("bucket address", "s3://vessel/a/../b", "s3://vessel/a/../b")]
    [InlineData("bucket address", "s3://vessel/a//b", "s3://vessel/a//b")]
    [InlineData("byte size", "", null)]
    [InlineData("byte size", "12X", null)]
    [InlineData("byte size", "-1G", null)]
    [InlineData("byte size", "99999999999T", null)]
    [InlineData("registry reference", "Upper/Case", null)]
    [InlineData("registry reference", "host:5000/name@sha256:123", null)]
    [InlineData("registry reference", "name:bad/tag", null)]
    [InlineData("registry reference", "name:-tag", null)]
    [InlineData("registry reference", "host:5000/../x", null)]
    [InlineData("network rule", "8080", "'8080'")]
    [InlineData("network rule", "host:0", "'host:0'")]
    [InlineData("network rule", "host:70000", "'host:70000'")]
    [InlineData("network rule", ":80", "':80'")]
    [InlineData("network rule", "10.0.0.0/33", "'10.0.0.0/33'")]
    [InlineData("network rule", "not an ip/8", "'not an ip/8'")]
    [InlineData("network rule", "a b:80", "'a b:80'")]
    [InlineData("image path", "", null)]
    [InlineData("image path", "/", null)]
    [InlineData("image path", "..", null)]
    [InlineData("image path", "a\0b", null)]
    public void Malformed_text_is_refused_as_invalid_input_naming_it_where_promised(string parser, string text, string? named)
    {
        VesselException e = Assert.Throws<VesselException>(() => s_parsers[parser](text));
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
        if (named is not null)
        {
            Assert.Contains(named, e.Message, StringComparison.Ordinal);
        }
    }
}
