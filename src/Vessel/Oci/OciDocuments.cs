using System.Text.Json;

namespace Vessel.Oci;

/// <summary>The target of a content reference (image-spec descriptor.md).</summary>
internal sealed record OciDescriptor(
    string MediaType,
    OciDigest Digest,
    long Size,
    OciPlatform? Platform,
    IReadOnlyDictionary<string, string> Annotations,
    IReadOnlyList<string> Urls)
{
    public const string RefNameAnnotation = "org.opencontainers.image.ref.name";

    public string? RefName => Annotations.GetValueOrDefault(RefNameAnnotation);
}

/// <summary>A descriptor's platform (image-index.md, "platform").</summary>
internal sealed record OciPlatform(string Os, string Architecture, string? Variant)
{
    public override string ToString() => Variant is null ? $"{Os}/{Architecture}" : $"{Os}/{Architecture}/{Variant}";
}

/// <summary>An image index or Docker manifest list (image-index.md).</summary>
internal sealed record OciIndex(string MediaType, IReadOnlyList<OciDescriptor> Manifests);

/// <summary>An image manifest, OCI or Docker v2 schema 2 (manifest.md).</summary>
internal sealed record OciManifest(string MediaType, OciDescriptor Config, IReadOnlyList<OciDescriptor> Layers);

/// <summary>Parses the JSON documents of image-spec with limits and messages that name the document.</summary>
internal static class OciDocuments
{
    /// <summary>
    /// The largest manifest, index or config Vessel reads. Real ones are a few KiB (a config
    /// with a long history reaches tens of KiB); registries cap manifests at 4 MiB too.
    /// </summary>
    public const int MaxDocumentSize = 4 << 20;

    /// <summary>More layers than any real image has; overlayfs-based runtimes stop at 128.</summary>
    public const int MaxLayers = 1000;

    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 64 };

    /// <summary>Reads a whole JSON document from <paramref name="stream"/>, refusing more than <paramref name="limit"/> bytes.</summary>
    public static async Task<byte[]> ReadLimitedAsync(Stream stream, long limit, string what, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[81920];
        int n;
        while ((n = await stream.ReadAsync(chunk, cancellationToken)) > 0)
        {
            if (buffer.Length + n > limit)
            {
                throw new InvalidDataException(
                    $"{what} is larger than {Vessel.Common.ByteSize.Format(limit)}; Vessel reads JSON documents up to that size.");
            }
            buffer.Write(chunk, 0, n);
        }
        return buffer.ToArray();
    }

    /// <summary>Checks a descriptor's claimed size before reading a JSON document it points to.</summary>
    public static void CheckDocumentSize(OciDescriptor descriptor, string what)
    {
        if (descriptor.Size > MaxDocumentSize)
        {
            throw new InvalidDataException(
                $"{what} claims {descriptor.Size} bytes; Vessel reads JSON documents up to {Vessel.Common.ByteSize.Format(MaxDocumentSize)}.");
        }
    }

    public static JsonDocument ParseJson(ReadOnlyMemory<byte> json, string what)
    {
        try
        {
            return JsonDocument.Parse(json, DocumentOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{what} is not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>Parses a manifest or an index; <paramref name="contentType"/> is the media type the source announced, if any.</summary>
    public static object ParseManifestOrIndex(ReadOnlyMemory<byte> json, string? contentType, string what)
    {
        using JsonDocument doc = ParseJson(json, what);
        JsonElement root = RequireObject(doc.RootElement, what);
        string? mediaType = OptionalString(root, "mediaType", what);
        if (root.TryGetProperty("schemaVersion", out JsonElement sv) && sv.ValueKind == JsonValueKind.Number && sv.TryGetInt32(out int schemaVersion) && schemaVersion == 1
            || contentType is OciMediaTypes.DockerManifestV1 or OciMediaTypes.DockerManifestV1Signed)
        {
            throw new VesselException(VesselErrorReason.Unsupported,
                $"{what} is a Docker schema 1 manifest, which Vessel does not read; re-push the image with a current tool (skopeo copy, docker push).");
        }
        string effective = mediaType ?? contentType ?? (root.TryGetProperty("manifests", out _) ? OciMediaTypes.ImageIndex : OciMediaTypes.ImageManifest);
        if (contentType is not null && mediaType is not null && contentType != mediaType
            && (OciMediaTypes.IsIndex(contentType) || OciMediaTypes.IsManifest(contentType)))
        {
            throw new InvalidDataException($"{what}: its mediaType '{OciDigest.Printable(mediaType)}' contradicts the announced '{OciDigest.Printable(contentType)}'.");
        }
        if (OciMediaTypes.IsIndex(effective))
        {
            var manifests = ReadDescriptors(root, "manifests", what, required: true);
            return new OciIndex(effective, manifests);
        }
        if (OciMediaTypes.IsManifest(effective))
        {
            if (!root.TryGetProperty("config", out JsonElement config))
            {
                throw new InvalidDataException($"{what} has no config descriptor.");
            }
            OciDescriptor configDescriptor = ReadDescriptor(config, $"{what}, config", null);
            var layers = ReadDescriptors(root, "layers", what, required: true);
            if (layers.Count > MaxLayers)
            {
                throw new InvalidDataException($"{what} lists {layers.Count} layers; Vessel reads at most {MaxLayers}.");
            }
            return new OciManifest(effective, configDescriptor, layers);
        }
        throw new VesselException(VesselErrorReason.Unsupported,
            $"{what} has media type '{OciDigest.Printable(effective)}', which is neither an image manifest nor an index.");
    }

    public static IReadOnlyList<OciDescriptor> ReadDescriptors(JsonElement parent, string property, string what, bool required)
    {
        if (!parent.TryGetProperty(property, out JsonElement array) || array.ValueKind == JsonValueKind.Null)
        {
            if (required)
            {
                throw new InvalidDataException($"{what} has no '{property}' list.");
            }
            return [];
        }
        if (array.ValueKind != JsonValueKind.Array)
        {
            throw new InvalidDataException($"{what}: '{property}' is not a list.");
        }
        var list = new List<OciDescriptor>(array.GetArrayLength());
        int i = 0;
        foreach (JsonElement item in array.EnumerateArray())
        {
            list.Add(ReadDescriptor(item, $"{what}, {property}[{i}]", null));
            i++;
        }
        return list;
    }

    public static OciDescriptor ReadDescriptor(JsonElement element, string what, string? defaultMediaType)
    {
        RequireObject(element, what);
        string mediaType = OptionalString(element, "mediaType", what) ?? defaultMediaType
            ?? throw new InvalidDataException($"{what} has no mediaType.");
        OciDigest digest = OciDigest.Parse(OptionalString(element, "digest", what), what);
        if (!element.TryGetProperty("size", out JsonElement sizeElement) || sizeElement.ValueKind != JsonValueKind.Number
            || !sizeElement.TryGetInt64(out long size) || size < 0)
        {
            throw new InvalidDataException($"{what} has no valid size (a non-negative integer).");
        }
        OciPlatform? platform = null;
        if (element.TryGetProperty("platform", out JsonElement p) && p.ValueKind == JsonValueKind.Object)
        {
            platform = new OciPlatform(
                OptionalString(p, "os", what) ?? string.Empty,
                OptionalString(p, "architecture", what) ?? string.Empty,
                OptionalString(p, "variant", what));
        }
        var urls = OptionalStringList(element, "urls", what) ?? [];
        return new OciDescriptor(mediaType, digest, size, platform, OptionalStringMap(element, "annotations", what), urls);
    }

    public static JsonElement RequireObject(JsonElement element, string what)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"{what} is not a JSON object.");
        }
        return element;
    }

    public static string? OptionalString(JsonElement parent, string property, string what)
    {
        if (!parent.TryGetProperty(property, out JsonElement e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (e.ValueKind != JsonValueKind.String)
        {
            throw new InvalidDataException($"{what}: '{property}' is not a string.");
        }
        return e.GetString();
    }

    public static IReadOnlyList<string>? OptionalStringList(JsonElement parent, string property, string what)
    {
        if (!parent.TryGetProperty(property, out JsonElement e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (e.ValueKind != JsonValueKind.Array)
        {
            throw new InvalidDataException($"{what}: '{property}' is not a list of strings.");
        }
        var list = new List<string>(e.GetArrayLength());
        foreach (JsonElement item in e.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw new InvalidDataException($"{what}: '{property}' is not a list of strings.");
            }
            list.Add(item.GetString()!);
        }
        return list;
    }

    public static IReadOnlyDictionary<string, string> OptionalStringMap(JsonElement parent, string property, string what)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!parent.TryGetProperty(property, out JsonElement e) || e.ValueKind == JsonValueKind.Null)
        {
            return map;
        }
        if (e.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"{what}: '{property}' is not a map of strings.");
        }
        foreach (JsonProperty item in e.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw new InvalidDataException($"{what}: '{property}.{OciDigest.Printable(item.Name)}' is not a string.");
            }
            map[item.Name] = item.Value.GetString()!;
        }
        return map;
    }
}
