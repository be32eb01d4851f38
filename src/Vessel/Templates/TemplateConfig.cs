using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vessel.Templates;

/// <summary>
/// The runtime config a phase leaves behind (stored with its cache entry and with the
/// template): the environment, working directory and user that later steps and the start
/// command see, plus the VM shape and commands finalize used.
/// </summary>
public sealed record TemplateConfig
{
    private static readonly JsonSerializerOptions s_json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>KEY=VALUE, in the order they were set (a later value of a key replaces the earlier one in place).</summary>
    public IReadOnlyList<string> Env { get; init; } = [];

    public string Workdir { get; init; } = "/";

    public string User { get; init; } = "root";

    public long DiskSizeBytes { get; init; }

    public int ReservedMb { get; init; }

    public int Cpu { get; init; } = TemplateSpec.DefaultCpu;

    public int MemoryMb { get; init; } = TemplateSpec.DefaultMemoryMb;

    public string? Start { get; init; }

    public string? Ready { get; init; }

    /// <summary>The image the template started from (its content digest), inherited by children.</summary>
    public string? ImageDigest { get; init; }

    /// <summary>The image config (OCI JSON) the template started from; the provisioning files carry it.</summary>
    public string? ImageConfigJson { get; init; }

    public TemplateConfig WithEnv(IReadOnlyList<string> pairs)
    {
        var env = Env.ToList();
        for (int i = 0; i < pairs.Count; i += 2)
        {
            string entry = $"{pairs[i]}={pairs[i + 1]}";
            int at = env.FindIndex(e => e.StartsWith(pairs[i] + "=", StringComparison.Ordinal));
            if (at >= 0)
            {
                env[at] = entry;
            }
            else
            {
                env.Add(entry);
            }
        }
        return this with { Env = env };
    }

    public string ToJson() => JsonSerializer.Serialize(this, s_json);

    public static TemplateConfig FromJson(string json, string what)
    {
        try
        {
            return JsonSerializer.Deserialize<TemplateConfig>(json, s_json) ?? throw new JsonException("null");
        }
        catch (JsonException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"{what}: the stored template config is not valid ({e.Message}); rebuild with --no-cache.", e);
        }
    }
}
