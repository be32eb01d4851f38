using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vessel.Guest;

/// <summary>A built guest kit: a kernel and an initramfs with their hashes, in one directory.</summary>
public sealed record GuestKit(string Directory, KitManifest Manifest)
{
    public const string ManifestFile = "kit.json";

    public string KernelPath => Path.Combine(Directory, Manifest.Kernel);

    public string InitramfsPath => Path.Combine(Directory, Manifest.Initramfs);

    /// <summary>
    /// Loads a kit and checks every asset against its manifest: a sandbox never boots from a
    /// missing or altered kernel or initramfs. The error names the asset and how to fix it.
    /// </summary>
    public static GuestKit Load(string directory)
    {
        string manifestPath = Path.Combine(directory, ManifestFile);
        if (!File.Exists(manifestPath))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"No guest kit in {directory} ({ManifestFile} is missing): run 'vessel kit build'.");
        }
        KitManifest manifest;
        try
        {
            manifest = JsonSerializer.Deserialize(File.ReadAllText(manifestPath), KitJsonContext.Default.KitManifest)
                ?? throw new InvalidDataException("empty");
        }
        catch (Exception e) when (e is JsonException or InvalidDataException)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Guest kit manifest {manifestPath} is unreadable ({e.Message}): run 'vessel kit build'.");
        }
        var kit = new GuestKit(directory, manifest);
        Check(kit.KernelPath, manifest.KernelSha256, "kernel");
        Check(kit.InitramfsPath, manifest.InitramfsSha256, "initramfs");
        return kit;
    }

    private static void Check(string path, string expected, string what)
    {
        if (!File.Exists(path))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"Guest kit {what} {path} is missing: run 'vessel kit build'.");
        }
        string actual = Sha256File(path);
        if (!string.Equals(actual, expected, StringComparison.OrdinalIgnoreCase))
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Guest kit {what} {path} does not match its manifest (sha256 {actual}, expected {expected}): run 'vessel kit build'.");
        }
    }

    internal static string Sha256File(string path)
    {
        using FileStream s = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(s));
    }
}

/// <summary>kit.json: what the kit is made of (docs/ARCHITECTURE.md, Guest).</summary>
public sealed record KitManifest(
    string Id,
    string Kernel,
    string KernelSha256,
    string Initramfs,
    string InitramfsSha256,
    string KernelPackage,
    string KernelVersion,
    string KernelPackageSha256,
    IReadOnlyList<string> Modules,
    string AgentSha256,
    DateTimeOffset Created);

[JsonSerializable(typeof(KitManifest))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class KitJsonContext : JsonSerializerContext
{
}
