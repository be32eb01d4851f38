using Vessel.Vmm;

namespace Vessel.Tests.Common;

/// <summary>
/// Every parser of text a user gives refuses malformed text the same way: a <see cref="VesselException"/>
/// with <see cref="VesselErrorReason.InvalidInput"/>, and where the parser promises it, the text named
/// in the message. One table for all of them (each parser's accepted forms stay with its own tests).
/// </summary>
public sealed class MalformedInputTests
{
    /// <summary>A parser, what its message must contain for a text (null: nothing promised), and texts it must refuse.</summary>
    private sealed record Parser(Action<string> Parse, Func<string, string?> Named, string[] Malformed);

    private static readonly Dictionary<string, Parser> s_parsers = new(StringComparer.Ordinal)
    {
        ["bucket address"] = new(text => S3StoreOptions.Parse(text), text => text,
            ["/var/lib/vessel/blocks", "s3://", "s3://UPPER", "s3://ab", "s3://vessel/a/../b", "s3://vessel/a//b"]),
        ["byte size"] = new(text => ByteSize.Parse(text), _ => null, ["", "12X", "-1G", "99999999999T"]),
        ["registry reference"] = new(text => RegistryReference.Parse(text), _ => null,
            ["Upper/Case", "host:5000/name@sha256:123", "name:bad/tag", "name:-tag", "host:5000/../x"]),
        ["network rule"] = new(text => NetworkRule.Parse(text), text => $"'{text}'",
            ["8080", "host:0", "host:70000", ":80", "10.0.0.0/33", "not an ip/8", "a b:80"]),
        ["image path"] = new(text => ImagePath.CleanRequested(text), _ => null, ["", "/", "..", "a\0b"]),
    };

    public static TheoryData<string, string> Cases()
    {
        var cases = new TheoryData<string, string>();
        foreach ((string name, Parser parser) in s_parsers)
        {
            foreach (string text in parser.Malformed)
            {
                cases.Add(name, text);
            }
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Malformed_text_is_refused_as_invalid_input_naming_it_where_promised(string parser, string text)
    {
        VesselException e = Assert.Throws<VesselException>(() => s_parsers[parser].Parse(text));
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
        if (s_parsers[parser].Named(text) is string named)
        {
            Assert.Contains(named, e.Message, StringComparison.Ordinal);
        }
    }
}
