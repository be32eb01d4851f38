using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Vessel.Containerd.Api.Images;

namespace Vessel.Containerd;

/// <summary>One layer of an image in containerd's content store.</summary>
/// <param name="Digest">The blob's digest (compressed, as the manifest lists it).</param>
/// <param name="DiffId">The digest of the uncompressed tar (the config's rootfs.diff_ids).</param>
internal sealed record ContainerdLayer(string Digest, string MediaType, long Size, string DiffId);

/// <summary>An image in containerd, resolved down to its platform manifest, config and layers.</summary>
/// <param name="Name">The name containerd stores it under ("docker.io/library/alpine:3.20").</param>
/// <param name="ChainId">The chain id of all layers: the key of the image's committed top snapshot.</param>
internal sealed record ContainerdImage(string Name, string ManifestDigest, string ConfigDigest, IReadOnlyList<ContainerdLayer> Layers, string ChainId)
{
    private static readonly System.Buffers.SearchValues<char> LowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");

    /// <summary>The largest manifest, index or config Vessel reads into memory.</summary>
    private const int MaxJsonSize = 4 << 20;

    /// <summary>
    /// Finds <paramref name="reference"/> (as given, then in its normalized docker form), picks the
    /// manifest for this machine's platform from an index, reads the config and pairs layers with diff ids.
    /// </summary>
    public static async Task<ContainerdImage> ResolveAsync(ContainerdClient client, string reference, CancellationToken cancellationToken)
    {
        Image image = await GetImageAsync(client, reference, cancellationToken);
        var target = image.Target ?? throw new VesselException(VesselErrorReason.Corrupt, $"Image '{image.Name}' has no target descriptor.");
        string manifestDigest = target.Digest;
        string mediaType = target.MediaType;
        using JsonDocument top = await ReadJsonAsync(client, manifestDigest, image.Name, cancellationToken);
        JsonDocument? manifestDoc = null;
        try
        {
            JsonElement manifest = top.RootElement;
            if (IsIndex(mediaType, manifest))
            {
                (manifestDigest, mediaType) = PickPlatform(manifest, image.Name);
                manifestDoc = await ReadJsonAsync(client, manifestDigest, image.Name, cancellationToken);
                manifest = manifestDoc.RootElement;
            }
            if (!manifest.TryGetProperty("config", out JsonElement config) || !manifest.TryGetProperty("layers", out JsonElement layers)
                || layers.ValueKind != JsonValueKind.Array)
            {
                throw new VesselException(VesselErrorReason.Corrupt, $"Manifest {manifestDigest} of '{image.Name}' has no config or layers.");
            }
            string configDigest = RequiredString(config, "digest", image.Name);
            using JsonDocument configDoc = await ReadJsonAsync(client, configDigest, image.Name, cancellationToken);
            var diffIds = new List<string>();
            if (configDoc.RootElement.TryGetProperty("rootfs", out JsonElement rootfs)
                && rootfs.TryGetProperty("diff_ids", out JsonElement ids) && ids.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement id in ids.EnumerateArray())
                {
                    diffIds.Add(CheckDigest(id.GetString(), image.Name));
                }
            }
            if (diffIds.Count != layers.GetArrayLength())
            {
                throw new VesselException(VesselErrorReason.Corrupt,
                    $"Image '{image.Name}': the manifest lists {layers.GetArrayLength()} layers but the config has {diffIds.Count} diff ids.");
            }
            var result = new List<ContainerdLayer>();
            int i = 0;
            foreach (JsonElement layer in layers.EnumerateArray())
            {
                result.Add(new ContainerdLayer(
                    CheckDigest(RequiredString(layer, "digest", image.Name), image.Name),
                    layer.TryGetProperty("mediaType", out JsonElement mt) ? mt.GetString() ?? string.Empty : string.Empty,
                    layer.TryGetProperty("size", out JsonElement size) && size.TryGetInt64(out long s) ? s : -1,
                    diffIds[i++]));
            }
            if (result.Count == 0)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"Image '{image.Name}' has no layers: there is nothing to read artifacts from.");
            }
            return new ContainerdImage(image.Name, manifestDigest, configDigest, result, ComputeChainId(diffIds));
        }
        finally
        {
            manifestDoc?.Dispose();
        }
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

    private static async Task<Image> GetImageAsync(ContainerdClient client, string reference, CancellationToken cancellationToken)
    {
        try
        {
            return await client.GetImageAsync(reference, cancellationToken);
        }
        catch (VesselException e) when (e.Reason == VesselErrorReason.NotFound)
        {
            string normalized = NormalizeReference(reference);
            if (normalized != reference)
            {
                try
                {
                    return await client.GetImageAsync(normalized, cancellationToken);
                }
                catch (VesselException e2) when (e2.Reason == VesselErrorReason.NotFound)
                {
                }
            }
            string tried = normalized != reference ? $"'{reference}' and '{normalized}'" : $"'{reference}'";
            throw new VesselException(VesselErrorReason.NotFound,
                $"Image {tried} not found in namespace '{client.Namespace}' of containerd at {client.Address}: pull or import it first (ctr -n {client.Namespace} images ls lists what is there).", e);
        }
    }

    private static bool IsIndex(string mediaType, JsonElement document)
        => mediaType is "application/vnd.oci.image.index.v1+json" or "application/vnd.docker.distribution.manifest.list.v2+json"
           || (document.TryGetProperty("manifests", out JsonElement m) && m.ValueKind == JsonValueKind.Array && !document.TryGetProperty("layers", out _));

    private static (string Digest, string MediaType) PickPlatform(JsonElement index, string name)
    {
        string arch = RuntimeInformation.OSArchitecture switch
        {
            Architecture.X64 => "amd64",
            Architecture.Arm64 => "arm64",
            Architecture.X86 => "386",
            Architecture.Arm => "arm",
            _ => RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant(),
        };
        var seen = new List<string>();
        foreach (JsonElement m in index.GetProperty("manifests").EnumerateArray())
        {
            string os = string.Empty, a = string.Empty;
            if (m.TryGetProperty("platform", out JsonElement p))
            {
                os = p.TryGetProperty("os", out JsonElement o) ? o.GetString() ?? string.Empty : string.Empty;
                a = p.TryGetProperty("architecture", out JsonElement ar) ? ar.GetString() ?? string.Empty : string.Empty;
            }
            seen.Add($"{os}/{a}");
            if (os == "linux" && a == arch)
            {
                return (RequiredString(m, "digest", name), m.TryGetProperty("mediaType", out JsonElement mt) ? mt.GetString() ?? string.Empty : string.Empty);
            }
        }
        throw new VesselException(VesselErrorReason.NotFound,
            $"Image '{name}' has no linux/{arch} manifest (it has: {string.Join(", ", seen)}).");
    }

    private static async Task<JsonDocument> ReadJsonAsync(ContainerdClient client, string digest, string name, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        await using (var stream = new ContentStream(client, digest, expectedSize: -1))
        {
            byte[] chunk = new byte[81920];
            int n;
            while ((n = await stream.ReadAsync(chunk, cancellationToken)) > 0)
            {
                buffer.Write(chunk, 0, n);
                if (buffer.Length > MaxJsonSize)
                {
                    throw new VesselException(VesselErrorReason.Corrupt, $"Blob {digest} of '{name}' is larger than {MaxJsonSize} bytes: not a manifest or config.");
                }
            }
        }
        try
        {
            return JsonDocument.Parse(buffer.ToArray());
        }
        catch (JsonException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Blob {digest} of '{name}' is not valid JSON: {e.Message}", e);
        }
    }

    private static string RequiredString(JsonElement element, string property, string name)
    {
        if (element.TryGetProperty(property, out JsonElement value) && value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } s)
        {
            return s;
        }
        throw new VesselException(VesselErrorReason.Corrupt, $"Image '{name}': a descriptor has no '{property}'.");
    }

    private static string CheckDigest(string? digest, string name)
    {
        if (digest is null || !digest.StartsWith("sha256:", StringComparison.Ordinal) || digest.Length != 71
            || digest.AsSpan(7).ContainsAnyExcept(LowerHex))
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Image '{name}': '{digest}' is not a sha256 digest.");
        }
        return digest;
    }
}
