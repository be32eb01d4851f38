using System.Text.RegularExpressions;

namespace Vessel.Oci;

/// <summary>
/// An image in a registry: <c>[registry/]repository[:tag][@sha256:...]</c>, as Docker and the
/// distribution project's reference grammar spell it. The first component is a registry when
/// it contains a dot or a colon or is <c>localhost</c>; otherwise the image is on Docker Hub
/// (<c>alpine</c> is <c>docker.io/library/alpine:latest</c>).
/// </summary>
public sealed partial record RegistryReference(string Registry, string Repository, string? Tag, OciDigest? Digest)
{
    public const string DockerHub = "docker.io";
    private const string DefaultTag = "latest";
    private const int MaxNameLength = 255; // distribution's NameTotalLengthMax

    /// <summary>The tag or digest to ask the registry for.</summary>
    public string Reference => Digest?.ToString() ?? Tag ?? DefaultTag;

    /// <summary>Where to send API calls: Docker Hub's API lives on another host than its name.</summary>
    public string ApiHost => Registry == DockerHub ? "registry-1.docker.io" : Registry;

    public override string ToString() =>
        $"{Registry}/{Repository}{(Tag is null ? string.Empty : ":" + Tag)}{(Digest is null ? string.Empty : "@" + Digest)}";

    public static bool TryParse(string text, out RegistryReference? reference, out string? error)
    {
        reference = null;
        error = null;
        string s = text.StartsWith("docker://", StringComparison.Ordinal) ? text["docker://".Length..] : text;
        OciDigest? digest = null;
        int at = s.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            if (!OciDigest.TryParse(s[(at + 1)..], out OciDigest d))
            {
                error = $"'{OciDigest.Printable(text)}': '{OciDigest.Printable(s[(at + 1)..])}' is not a sha256 digest (sha256: and 64 lowercase hex digits).";
                return false;
            }
            digest = d;
            s = s[..at];
        }
        string? tag = null;
        int lastColon = s.LastIndexOf(':');
        if (lastColon > s.LastIndexOf('/'))
        {
            tag = s[(lastColon + 1)..];
            s = s[..lastColon];
            if (!TagPattern().IsMatch(tag))
            {
                error = $"'{OciDigest.Printable(text)}': '{OciDigest.Printable(tag)}' is not a valid tag.";
                return false;
            }
        }
        string registry = DockerHub;
        string repository = s;
        int slash = s.IndexOf('/', StringComparison.Ordinal);
        if (slash > 0)
        {
            string first = s[..slash];
            if (first.Contains('.', StringComparison.Ordinal) || first.Contains(':', StringComparison.Ordinal) || first == "localhost")
            {
                registry = first;
                repository = s[(slash + 1)..];
            }
        }
        if (registry is "index.docker.io" or "registry-1.docker.io")
        {
            registry = DockerHub;
        }
        if (registry == DockerHub && !repository.Contains('/', StringComparison.Ordinal))
        {
            repository = "library/" + repository;
        }
        if (!HostPattern().IsMatch(registry))
        {
            error = $"'{OciDigest.Printable(text)}': '{OciDigest.Printable(registry)}' is not a registry host[:port].";
            return false;
        }
        if (repository.Length == 0 || repository.Length > MaxNameLength || !RepositoryPattern().IsMatch(repository))
        {
            error = $"'{OciDigest.Printable(text)}' is not an image reference: the repository '{OciDigest.Printable(repository)}' must be lowercase path components of letters, digits and separators (., _, __, -).";
            return false;
        }
        reference = new RegistryReference(registry, repository, tag, digest);
        return true;
    }

    public static RegistryReference Parse(string text) => TryParse(text, out RegistryReference? r, out string? error)
        ? r!
        : throw new VesselException(VesselErrorReason.InvalidInput, error!);

    [GeneratedRegex(@"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
    private static partial Regex TagPattern();

    [GeneratedRegex(@"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")]
    private static partial Regex RepositoryPattern();

    [GeneratedRegex(@"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")]
    private static partial Regex HostPattern();
}
