using System.Globalization;
using System.Text.Json;
using Vessel.Agent;

namespace Vessel.Shim;

/// <summary>
/// The part of an OCI runtime spec (opencontainers/runtime-spec config.md) the shim honours:
/// the process (args, env, cwd, user, terminal) and the hostname. A spec it cannot honour is
/// refused with what is wrong, never run differently from what it says.
/// </summary>
internal sealed record OciProcess(IReadOnlyList<string> Args, IReadOnlyList<string> Env, string Cwd, uint Uid, uint Gid, bool Terminal)
{
    /// <summary>
    /// Reads <c>config.json</c> of a bundle: the process, the hostname and the root's path (relative
    /// to the bundle, or absolute: <c>ctr run --config</c> and <c>--rootfs</c> name a tree that
    /// containerd passes no mounts for).
    /// </summary>
    public static (OciProcess Process, string? Hostname, string RootPath) ReadBundle(string bundle)
    {
        string path = Path.Combine(bundle, "config.json");
        if (!File.Exists(path))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"bundle {bundle} has no config.json (OCI runtime spec).");
        }
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        if (!doc.RootElement.TryGetProperty("process", out JsonElement process))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{path}: the spec has no process to run.");
        }
        string? hostname = doc.RootElement.TryGetProperty("hostname", out JsonElement h) && h.ValueKind == JsonValueKind.String ? h.GetString() : null;
        string root = "rootfs";
        if (doc.RootElement.TryGetProperty("root", out JsonElement r) && r.ValueKind == JsonValueKind.Object
            && r.TryGetProperty("path", out JsonElement p) && p.ValueKind == JsonValueKind.String && p.GetString() is { Length: > 0 } rootPath)
        {
            root = rootPath;
        }
        return (Parse(process, path), hostname, Path.GetFullPath(root, bundle));
    }

    /// <summary>Reads a process as JSON (the spec of an Exec: its Any's value).</summary>
    public static OciProcess Parse(ReadOnlySpan<byte> json, string what)
    {
        using var doc = JsonDocument.Parse(json.ToArray());
        return Parse(doc.RootElement, what);
    }

    private static OciProcess Parse(JsonElement process, string what)
    {
        var args = Strings(process, "args", what);
        if (args.Count == 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{what}: process.args is empty: nothing to run.");
        }
        string cwd = process.TryGetProperty("cwd", out JsonElement c) && c.ValueKind == JsonValueKind.String ? c.GetString()! : "/";
        if (!cwd.StartsWith('/'))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{what}: process.cwd '{cwd}' is not absolute.");
        }
        uint uid = 0, gid = 0;
        if (process.TryGetProperty("user", out JsonElement user))
        {
            uid = user.TryGetProperty("uid", out JsonElement u) ? u.GetUInt32() : 0;
            gid = user.TryGetProperty("gid", out JsonElement g) ? g.GetUInt32() : 0;
        }
        bool terminal = process.TryGetProperty("terminal", out JsonElement t) && t.ValueKind == JsonValueKind.True;
        return new OciProcess(args, Strings(process, "env", what), cwd, uid, gid, terminal);
    }

    private static List<string> Strings(JsonElement parent, string name, string what)
    {
        var list = new List<string>();
        if (!parent.TryGetProperty(name, out JsonElement array) || array.ValueKind == JsonValueKind.Null)
        {
            return list;
        }
        if (array.ValueKind != JsonValueKind.Array)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{what}: process.{name} is not an array.");
        }
        foreach (JsonElement e in array.EnumerateArray())
        {
            list.Add(e.GetString() ?? throw new VesselException(VesselErrorReason.InvalidInput, $"{what}: process.{name} has a null entry."));
        }
        return list;
    }

    /// <summary>The agent request that runs this process in the guest.</summary>
    public ExecRequest ToExecRequest(bool stdin) => new(Args)
    {
        Environment = Env,
        WorkingDirectory = Cwd,
        User = Uid.ToString(CultureInfo.InvariantCulture) + ":" + Gid.ToString(CultureInfo.InvariantCulture),
        Stdin = stdin,
    };
}
