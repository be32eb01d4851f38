using Vessel.Common;
using Vessel.Containerd;

namespace Vessel.Shim;

/// <summary>
/// The shim's own settings, from <c>/etc/vessel/shim.toml</c> (or <c>VESSEL_SHIM_CONFIG</c>,
/// through <see cref="VesselSettings"/>): a small TOML subset, tables and <c>key = value</c>
/// lines with booleans and basic strings. A missing file means every default (all off); a key
/// or value the shim does not know is an error naming the file and the line, never ignored.
/// <code>
/// [boot_artifacts]
/// enabled = true   # boot with the kernel, initrd and config an image's annotations name
/// mode = "view"    # "view": a containerd snapshot view under a lease; "extract": copied from the layers
/// </code>
/// </summary>
internal sealed record ShimConfig
{
    public const string DefaultPath = "/etc/vessel/shim.toml";

    /// <summary>Seed 002 in Create: boot with the artifacts an image names. Off unless enabled.</summary>
    public bool BootArtifacts { get; init; }

    /// <summary>How the artifacts are fetched (view unless the config says extract).</summary>
    public ArtifactMode BootArtifactMode { get; init; } = ArtifactMode.View;

    /// <summary>The file it was read from (or would have been).</summary>
    public string Path { get; init; } = DefaultPath;

    /// <summary>Reads the configured file: <see cref="VesselSettings.ShimConfig"/>, else <see cref="DefaultPath"/>.</summary>
    public static ShimConfig Load() => Load(VesselSettings.Current.ShimConfig ?? DefaultPath);

    public static ShimConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            return new ShimConfig { Path = path };
        }
        return Parse(File.ReadAllLines(path), path);
    }

    public static ShimConfig Parse(IReadOnlyList<string> lines, string path)
    {
        var config = new ShimConfig { Path = path };
        string table = string.Empty;
        for (int i = 0; i < lines.Count; i++)
        {
            string where = $"{path}:{i + 1}";
            string line = StripComment(lines[i]).Trim();
            if (line.Length == 0)
            {
                continue;
            }
            if (line.StartsWith('[') && line.EndsWith(']'))
            {
                table = line[1..^1].Trim();
                if (table != "boot_artifacts")
                {
                    throw new VesselException(VesselErrorReason.InvalidInput, $"{where}: unknown table [{table}] (the shim knows [boot_artifacts]).");
                }
                continue;
            }
            int eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"{where}: expected 'key = value' or '[table]', got '{line}'.");
            }
            string key = line[..eq].Trim();
            string value = line[(eq + 1)..].Trim();
            config = (table, key) switch
            {
                ("boot_artifacts", "enabled") => config with { BootArtifacts = Boolean(value, where, key) },
                ("boot_artifacts", "mode") => config with { BootArtifactMode = Mode(value, where) },
                _ => throw new VesselException(VesselErrorReason.InvalidInput,
                    $"{where}: unknown key '{key}'{(table.Length > 0 ? $" in [{table}]" : " outside a table")} (the shim knows [boot_artifacts] enabled and mode)."),
            };
        }
        return config;
    }

    private static string StripComment(string line)
    {
        bool quoted = false;
        for (int i = 0; i < line.Length; i++)
        {
            if (line[i] == '"')
            {
                quoted = !quoted;
            }
            else if (line[i] == '#' && !quoted)
            {
                return line[..i];
            }
        }
        return line;
    }

    private static bool Boolean(string value, string where, string key) => value switch
    {
        "true" => true,
        "false" => false,
        _ => throw new VesselException(VesselErrorReason.InvalidInput, $"{where}: {key} must be true or false, not {value}."),
    };

    private static ArtifactMode Mode(string value, string where) => value switch
    {
        "\"view\"" => ArtifactMode.View,
        "\"extract\"" => ArtifactMode.Extract,
        _ => throw new VesselException(VesselErrorReason.InvalidInput, $"{where}: mode must be \"view\" or \"extract\", not {value}."),
    };
}
