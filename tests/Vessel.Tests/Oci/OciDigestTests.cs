namespace Vessel.Tests.Oci;

public sealed class OciDigestTests
{
    [Fact]
    public void Parse_accepts_a_sha256_digest_and_its_hex_is_a_safe_file_name()
    {
        string text = "sha256:" + new string('a', 64);
        OciDigest digest = OciDigest.Parse(text, "test");
        Assert.Equal(text, digest.ToString());
        Assert.Equal(new string('a', 64), digest.Hex);
    }

    [Theory]
    [InlineData("sha256:../../../../etc/passwd")]
    [InlineData("sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000")]
    [InlineData("sha256:abc")]
    [InlineData("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/")]
    [InlineData("")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    public void Parse_rejects_what_is_not_a_digest_naming_the_document(string text)
    {
        var e = Assert.Throws<InvalidDataException>(() => OciDigest.Parse(text, "index.json of img"));
        Assert.Contains("index.json of img", e.Message, StringComparison.Ordinal);
        Assert.Contains("not a digest", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_names_an_unsupported_algorithm()
    {
        var e = Assert.Throws<InvalidDataException>(() => OciDigest.Parse("sha512:" + new string('a', 128), "x"));
        Assert.Contains("sha256 digests only", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("alpine", "docker.io", "library/alpine", null, null)]
    [InlineData("alpine:3.20", "docker.io", "library/alpine", "3.20", null)]
    [InlineData("docker://registry.example:5000/team/app:v1", "registry.example:5000", "team/app", "v1", null)]
    [InlineData("localhost/app", "localhost", "app", null, null)]
    [InlineData("127.0.0.1:5000/busybox@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "127.0.0.1:5000", "busybox", null, "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("ghcr.io/o/r:t@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ghcr.io", "o/r", "t", "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    public void Registry_references_parse_like_docker(string text, string registry, string repository, string? tag, string? digest)
    {
        RegistryReference r = RegistryReference.Parse(text);
        Assert.Equal(registry, r.Registry);
        Assert.Equal(repository, r.Repository);
        Assert.Equal(tag, r.Tag);
        Assert.Equal(digest, r.Digest?.ToString());
    }

    [Fact]
    public void Auth_challenges_parse_quoted_parameters()
    {
        var p = RegistryClient.ParseChallenge("realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a/b:pull,push\"");
        Assert.Equal("https://auth.example/token", p["realm"]);
        Assert.Equal("registry.example", p["service"]);
        Assert.Equal("repository:a/b:pull,push", p["scope"]);
    }
}
