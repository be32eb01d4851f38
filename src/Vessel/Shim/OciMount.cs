using System.Text.Json;

namespace Vessel.Shim;

/// <summary>One entry of an OCI spec's <c>mounts</c> (opencontainers/runtime-spec config.md).</summary>
internal sealed record OciMount(string Destination, string Type, string Source, IReadOnlyList<string> Options)
{
    /// <summary>A bind mount: type "bind", or an option "bind"/"rbind" (runc's rule).</summary>
    public bool IsBind => Type == "bind" || Options.Contains("bind") || Options.Contains("rbind");

    /// <summary>The spec's mounts, in order (none when it lists none).</summary>
    public static IReadOnlyList<OciMount> ReadBundle(string bundle)
    {
        string path = Path.Combine(bundle, "config.json");
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var mounts = new List<OciMount>();
        if (!doc.RootElement.TryGetProperty("mounts", out JsonElement array) || array.ValueKind != JsonValueKind.Array)
        {
            return mounts;
        }
        foreach (JsonElement m in array.EnumerateArray())
        {
            string destination = Text(m, "destination");
            if (!destination.StartsWith('/'))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"{path}: mount destination '{destination}' is not absolute.");
            }
            var options = new List<string>();
            if (m.TryGetProperty("options", out JsonElement o) && o.ValueKind == JsonValueKind.Array)
            {
                options.AddRange(o.EnumerateArray().Select(e => e.GetString() ?? string.Empty));
            }
            mounts.Add(new OciMount(destination.TrimEnd('/') is { Length: > 0 } d ? d : "/", Text(m, "type"), Text(m, "source"), options));
        }
        return mounts;
    }

    private static string Text(JsonElement e, string name)
        => e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : string.Empty;
}
