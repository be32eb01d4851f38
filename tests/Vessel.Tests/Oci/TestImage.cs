using System.Formats.Tar;
using System.Text.Json;

namespace Vessel.Tests.Oci;

/// <summary>Builds small images in memory and writes them as an OCI layout, an oci-archive or a docker-archive.</summary>
internal sealed class TestImage
{
    public List<(byte[] Blob, byte[] Tar, string MediaType)> Layers { get; } = [];

    public string Architecture { get; set; } = "amd64";

    public Dictionary<string, byte[]> Blobs { get; } = new(StringComparer.Ordinal);

    public static byte[] Tar(params (string Name, string Content)[] files)
    {
        using var ms = new MemoryStream();
        using (var writer = new TarWriter(ms, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var (name, content) in files)
            {
                var entry = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) };
                writer.WriteEntry(entry);
            }
        }
        return ms.ToArray();
    }

    public static string Digest(byte[] data) => OciDigest.Compute(data).ToString();

    public TestImage AddLayer(byte[] tar, bool gzip = true)
    {
        byte[] blob = gzip ? LayersImageSource.Gzip(tar) : tar;
        Layers.Add((blob, tar, gzip ? OciMediaTypes.LayerGzip : OciMediaTypes.Layer));
        return this;
    }

    public byte[] ConfigJson(string? architecture = null) => Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["architecture"] = architecture ?? Architecture,
        ["os"] = "linux",
        ["config"] = new Dictionary<string, object> { ["Env"] = new[] { "PATH=/bin" }, ["Cmd"] = new[] { "/bin/sh" }, ["WorkingDir"] = "/root" },
        ["rootfs"] = new Dictionary<string, object> { ["type"] = "layers", ["diff_ids"] = Layers.Select(l => Digest(l.Tar)).ToArray() },
    }));

    public static Dictionary<string, object> Descriptor(string mediaType, byte[] content, Dictionary<string, object>? extra = null)
    {
        var d = new Dictionary<string, object> { ["mediaType"] = mediaType, ["digest"] = Digest(content), ["size"] = content.Length };
        foreach (var (k, v) in extra ?? [])
        {
            d[k] = v;
        }
        return d;
    }

    /// <summary>Adds config + manifest blobs; returns the manifest bytes.</summary>
    public byte[] AddManifest(string? architecture = null, byte[]? config = null)
    {
        config ??= ConfigJson(architecture);
        Blobs[Digest(config)] = config;
        foreach (var layer in Layers)
        {
            Blobs[Digest(layer.Blob)] = layer.Blob;
        }
        byte[] manifest = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = OciMediaTypes.ImageManifest,
            ["config"] = Descriptor(OciMediaTypes.ImageConfig, config),
            ["layers"] = Layers.Select(l => Descriptor(l.MediaType, l.Blob)).ToArray(),
        }));
        Blobs[Digest(manifest)] = manifest;
        return manifest;
    }

    public byte[] AddBlob(byte[] content)
    {
        Blobs[Digest(content)] = content;
        return content;
    }

    public static byte[] IndexJson(params Dictionary<string, object>[] manifests) => Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["schemaVersion"] = 2,
        ["mediaType"] = OciMediaTypes.ImageIndex,
        ["manifests"] = manifests,
    }));

    public static Dictionary<string, object> Tagged(byte[] manifest, string tag) =>
        Descriptor(OciMediaTypes.ImageManifest, manifest, new() { ["annotations"] = new Dictionary<string, string> { [OciDescriptor.RefNameAnnotation] = tag } });

    public static Dictionary<string, object> ForPlatform(byte[] manifest, string architecture) =>
        Descriptor(OciMediaTypes.ImageManifest, manifest, new() { ["platform"] = new Dictionary<string, string> { ["os"] = "linux", ["architecture"] = architecture } });

    /// <summary>Writes an OCI layout directory.</summary>
    public void WriteLayout(string dir, byte[] indexJson)
    {
        Directory.CreateDirectory(Path.Combine(dir, "blobs", "sha256"));
        File.WriteAllText(Path.Combine(dir, "oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
        File.WriteAllBytes(Path.Combine(dir, "index.json"), indexJson);
        foreach (var (digest, content) in Blobs)
        {
            File.WriteAllBytes(Path.Combine(dir, "blobs", "sha256", digest["sha256:".Length..]), content);
        }
    }

    /// <summary>Writes the same layout as a tar file (an oci-archive), with extra members if given.</summary>
    public void WriteOciArchive(string file, byte[] indexJson, params (string Name, byte[] Content)[] extra)
    {
        var members = new List<(string, byte[])> { ("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"u8.ToArray()), ("index.json", indexJson) };
        members.AddRange(Blobs.Select(b => ($"blobs/sha256/{b.Key["sha256:".Length..]}", b.Value)));
        members.AddRange(extra);
        WriteTar(file, members);
    }

    /// <summary>Writes a docker-archive: manifest.json, HEX.json config, HEX/layer.tar layers (uncompressed, as docker save does).</summary>
    public void WriteDockerArchive(string file, string repoTag, byte[]? config = null, Func<int, byte[], byte[]>? tamper = null)
    {
        config ??= ConfigJson();
        string configName = Digest(config)["sha256:".Length..] + ".json";
        var members = new List<(string, byte[])> { (configName, config) };
        var layerNames = new List<string>();
        for (int i = 0; i < Layers.Count; i++)
        {
            string name = $"{Digest(Layers[i].Tar)["sha256:".Length..][..16]}/layer.tar";
            layerNames.Add(name);
            members.Add((name, tamper?.Invoke(i, Layers[i].Tar) ?? Layers[i].Tar));
        }
        byte[] manifest = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new[]
        {
            new Dictionary<string, object> { ["Config"] = configName, ["RepoTags"] = new[] { repoTag }, ["Layers"] = layerNames },
        }));
        members.Add(("manifest.json", manifest));
        WriteTar(file, members);
    }

    public static void WriteTar(string file, IEnumerable<(string Name, byte[] Content)> members)
    {
        using var fs = File.Create(file);
        using var writer = new TarWriter(fs, TarEntryFormat.Pax);
        foreach (var (name, content) in members)
        {
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(content) });
        }
    }

    public static async Task<byte[]> ReadAllAsync(Stream stream, CancellationToken cancellationToken)
    {
        using var ms = new MemoryStream();
        await stream.CopyToAsync(ms, cancellationToken);
        return ms.ToArray();
    }
}
