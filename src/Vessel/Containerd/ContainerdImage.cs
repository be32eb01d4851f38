using System.Security.Cryptography;
using System.Text;
using Vessel.Oci;

namespace Vessel.Containerd;

/// <summary>An image in containerd, resolved down to its platform manifest, config and layers.</summary>
/// <param name="Name">The name containerd stores it under ("docker.io/library/alpine:3.20").</param>
/// <param name="Target">The image record's target descriptor (a manifest or an index), where a layer read starts again.</param>
/// <param name="ChainId">The chain id of all layers: the key of the image's committed top snapshot.</param>
/// <param name="Labels">The image config's labels (where an image carries its boot-artifact annotations).</param>
internal sealed record ContainerdImage(string Name, OciDescriptor Target, string ManifestDigest, IReadOnlyList<LayerDescriptor> Layers, string ChainId, IReadOnlyDictionary<string, string> Labels)
{
    /// <summary>
    /// Finds <paramref name="reference"/> (as given, then in its normalized docker form) and reads
    /// it as a <see cref="ContainerdImageSource"/>: the linux/amd64 manifest from an index, the
    /// config and its diff ids, each blob checked against its digest.
    /// </summary>
    public static async Task<ContainerdImage> ResolveAsync(ContainerdClient client, string reference, CancellationToken cancellationToken)
    {
        (string name, OciDescriptor target) = await ContainerdImageSource.FindAsync(client, reference, cancellationToken);
        await using var source = new ContainerdImageSource(client, name, target);
        ResolvedImage image;
        try
        {
            image = await source.ResolveAsync(cancellationToken);
        }
        catch (InvalidDataException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Image '{name}' in containerd: {e.Message}", e);
        }
        if (image.Layers.Count == 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Image '{name}' has no layers: there is nothing to read artifacts from.");
        }
        if (image.Config.DiffIds.Count != image.Layers.Count)
        {
            throw new VesselException(VesselErrorReason.Corrupt,
                $"Image '{name}': the manifest lists {image.Layers.Count} layers but the config has {image.Config.DiffIds.Count} diff ids.");
        }
        return new ContainerdImage(name, target, image.ManifestDigest!, image.Layers, ComputeChainId(image.Config.DiffIds), image.Config.Labels);
    }

    /// <summary>
    /// The chain id of a layer stack (OCI image-spec config.md, "Layer ChainID"):
    /// ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)).
    /// </summary>
    public static string ComputeChainId(IReadOnlyList<string> diffIds)
    {
        if (diffIds.Count == 0)
        {
            throw new ArgumentException("A chain id needs at least one diff id.", nameof(diffIds));
        }
        string chain = diffIds[0];
        for (int i = 1; i < diffIds.Count; i++)
        {
            byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(chain + " " + diffIds[i]));
            chain = "sha256:" + Convert.ToHexStringLower(hash);
        }
        return chain;
    }

    /// <summary>
    /// The docker form of a short reference, as containerd's tools store it:
    /// "alpine" becomes "docker.io/library/alpine:latest", "me/app:1" becomes "docker.io/me/app:1".
    /// </summary>
    public static string NormalizeReference(string reference)
    {
        string r = reference;
        int slash = r.IndexOf('/', StringComparison.Ordinal);
        string first = slash < 0 ? string.Empty : r[..slash];
        bool hasDomain = slash >= 0 && (first.Contains('.', StringComparison.Ordinal) || first.Contains(':', StringComparison.Ordinal) || first == "localhost");
        if (!hasDomain)
        {
            r = (slash < 0 ? "docker.io/library/" : "docker.io/") + r;
        }
        int lastSlash = r.LastIndexOf('/');
        string last = r[(lastSlash + 1)..];
        if (!last.Contains(':', StringComparison.Ordinal) && !r.Contains('@', StringComparison.Ordinal))
        {
            r += ":latest";
        }
        return r;
    }
}
