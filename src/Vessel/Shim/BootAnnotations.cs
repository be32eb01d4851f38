using System.Text.Json;
using Vessel.Containerd;

namespace Vessel.Shim;

/// <summary>
/// The boot artifacts an image names (seed 002): a kernel, optionally an initrd and a config
/// file, each a path inside the image. Read from the image config's labels, then the bundle's
/// spec annotations (<c>ctr run --annotation</c>, CRI), which win. Vessel's names
/// (<c>dev.vessel.boot.*</c>) and urunc's (<c>com.urunc.unikernel.binary</c>, <c>.initrd</c>) are
/// accepted; an empty value is no value (urunc's image builders write "" for an unused initrd).
/// </summary>
internal sealed record BootAnnotations(string Kernel, string? Initrd, string? Config)
{
    public const string KernelKey = "dev.vessel.boot.kernel";
    public const string InitrdKey = "dev.vessel.boot.initrd";
    public const string ConfigKey = "dev.vessel.boot.config";
    public const string UruncKernelKey = "com.urunc.unikernel.binary";
    public const string UruncInitrdKey = "com.urunc.unikernel.initrd";

    /// <summary>The files to fetch, kernel first.</summary>
    public IReadOnlyList<string> Files => new[] { Kernel, Initrd, Config }.OfType<string>().ToList();

    /// <summary>
    /// The artifacts named by <paramref name="labels"/> and <paramref name="annotations"/>
    /// (these win), or null when no kernel is named. An initrd or config without a kernel is an
    /// error: the image meant to boot its own kernel and Vessel will not boot it half.
    /// </summary>
    public static BootAnnotations? Find(IReadOnlyDictionary<string, string> labels, IReadOnlyDictionary<string, string> annotations, string imageName)
    {
        string? Value(params string[] keys)
        {
            foreach (IReadOnlyDictionary<string, string> source in new[] { annotations, labels })
            {
                foreach (string key in keys)
                {
                    if (source.TryGetValue(key, out string? v) && v.Trim().Length > 0)
                    {
                        return ImagePath.CleanRequested(v.Trim());
                    }
                }
            }
            return null;
        }
        string? kernel = Value(KernelKey, UruncKernelKey);
        string? initrd = Value(InitrdKey, UruncInitrdKey);
        string? config = Value(ConfigKey);
        if (kernel is null)
        {
            if (initrd is not null || config is not null)
            {
                throw new VesselException(VesselErrorReason.InvalidInput,
                    $"Image '{imageName}' names a boot {(initrd is not null ? "initrd" : "config")} but no kernel ({KernelKey} or {UruncKernelKey}).");
            }
            return null;
        }
        return new BootAnnotations(kernel, initrd, config);
    }

    /// <summary>The string annotations of a bundle's config.json (none when it has no annotations).</summary>
    public static IReadOnlyDictionary<string, string> SpecAnnotations(string bundle)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        string path = Path.Combine(bundle, "config.json");
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(path));
        if (doc.RootElement.TryGetProperty("annotations", out JsonElement a) && a.ValueKind == JsonValueKind.Object)
        {
            foreach (JsonProperty p in a.EnumerateObject().Where(p => p.Value.ValueKind == JsonValueKind.String))
            {
                result[p.Name] = p.Value.GetString()!;
            }
        }
        return result;
    }
}
