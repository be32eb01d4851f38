using System.Text.Json;

namespace Vessel.Oci;

/// <summary>
/// Reading and writing <see cref="ImageConfig"/> as JSON. The written form is itself an OCI
/// image config (image-spec config.md) holding only the fields Vessel keeps, so the file
/// stored next to a rootfs can be read back here or by any OCI tool.
/// </summary>
public sealed partial record ImageConfig
{
    // The keys of config.md's "config" object.
    private const string EnvKey = "Env";
    private const string EntrypointKey = "Entrypoint";
    private const string CmdKey = "Cmd";
    private const string WorkingDirKey = "WorkingDir";
    private const string UserKey = "User";
    private const string LabelsKey = "Labels";

    /// <summary>Parses an OCI or Docker image config; <paramref name="what"/> names the document in errors.</summary>
    public static ImageConfig Parse(ReadOnlyMemory<byte> json, string what)
    {
        if (json.Length > OciDocuments.MaxDocumentSize)
        {
            throw new InvalidDataException($"{what} is larger than {Vessel.Common.ByteSize.Format(OciDocuments.MaxDocumentSize)}; Vessel reads JSON documents up to that size.");
        }
        using JsonDocument doc = OciDocuments.ParseJson(json, what);
        JsonElement root = OciDocuments.RequireObject(doc.RootElement, what);
        string architecture = OciDocuments.OptionalString(root, "architecture", what) ?? string.Empty;
        string os = OciDocuments.OptionalString(root, "os", what) ?? string.Empty;

        IReadOnlyList<string> env = [];
        IReadOnlyList<string>? entrypoint = null;
        IReadOnlyList<string>? cmd = null;
        string? workingDir = null;
        string? user = null;
        IReadOnlyDictionary<string, string> labels = new Dictionary<string, string>();
        if (root.TryGetProperty("config", out JsonElement config) && config.ValueKind != JsonValueKind.Null)
        {
            string section = $"{what}, config";
            OciDocuments.RequireObject(config, section);
            env = OciDocuments.OptionalStringList(config, EnvKey, section) ?? [];
            entrypoint = OciDocuments.OptionalStringList(config, EntrypointKey, section);
            cmd = OciDocuments.OptionalStringList(config, CmdKey, section);
            workingDir = OciDocuments.OptionalString(config, WorkingDirKey, section);
            user = OciDocuments.OptionalString(config, UserKey, section);
            labels = OciDocuments.OptionalStringMap(config, LabelsKey, section);
        }

        var diffIds = new List<string>();
        if (root.TryGetProperty("rootfs", out JsonElement rootfs) && rootfs.ValueKind != JsonValueKind.Null)
        {
            string section = $"{what}, rootfs";
            OciDocuments.RequireObject(rootfs, section);
            foreach (string id in OciDocuments.OptionalStringList(rootfs, "diff_ids", section) ?? [])
            {
                diffIds.Add(OciDigest.Parse(id, $"{section}, diff_ids[{diffIds.Count}]").ToString());
            }
        }

        return new ImageConfig
        {
            Architecture = architecture,
            Os = os,
            Env = env,
            Entrypoint = entrypoint,
            Cmd = cmd,
            WorkingDir = string.IsNullOrEmpty(workingDir) ? null : workingDir,
            User = string.IsNullOrEmpty(user) ? null : user,
            Labels = labels,
            DiffIds = diffIds,
        };
    }

    /// <summary>Writes this config as an OCI image config (indented UTF-8 JSON).</summary>
    public byte[] ToJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("architecture", Architecture);
            w.WriteString("os", Os);
            w.WriteStartObject("config");
            WriteList(w, EnvKey, Env);
            if (Entrypoint is not null)
            {
                WriteList(w, EntrypointKey, Entrypoint);
            }
            if (Cmd is not null)
            {
                WriteList(w, CmdKey, Cmd);
            }
            if (WorkingDir is not null)
            {
                w.WriteString(WorkingDirKey, WorkingDir);
            }
            if (User is not null)
            {
                w.WriteString(UserKey, User);
            }
            if (Labels.Count > 0)
            {
                w.WriteStartObject(LabelsKey);
                foreach (var (key, value) in Labels.OrderBy(l => l.Key, StringComparer.Ordinal))
                {
                    w.WriteString(key, value);
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteStartObject("rootfs");
            w.WriteString("type", "layers");
            WriteList(w, "diff_ids", DiffIds);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/> (through a temporary file, so a reader never sees half of it).</summary>
    public async Task WriteFileAsync(string path, CancellationToken cancellationToken)
    {
        string temp = path + ".tmp";
        await File.WriteAllBytesAsync(temp, ToJson(), cancellationToken);
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Reads a config written by <see cref="WriteFileAsync"/> (or any OCI image config file).</summary>
    public static async Task<ImageConfig> ReadFileAsync(string path, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096, useAsync: true);
        byte[] json = await OciDocuments.ReadLimitedAsync(stream, OciDocuments.MaxDocumentSize, $"image config '{path}'", cancellationToken);
        return Parse(json, $"image config '{path}'");
    }

    private static void WriteList(Utf8JsonWriter w, string name, IReadOnlyList<string> values)
    {
        w.WriteStartArray(name);
        foreach (string v in values)
        {
            w.WriteStringValue(v);
        }
        w.WriteEndArray();
    }
}
