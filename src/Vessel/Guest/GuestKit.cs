using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vessel.Guest;

/// <summary>
/// A built guest kit, in one directory: a kernel, a small initramfs (busybox, modules, init) and
/// the read-only kit disk (the agent, its runtime and libraries), with their hashes.
/// </summary>
public sealed record GuestKit(string Directory, KitManifest Manifest)
{
    public const string ManifestFile = "kit.json";

    /// <summary>
    /// The least guest memory this kit boots and runs the agent in. Below it a sandbox is refused
    /// before boot. Measured (2026-12-06): a 96 MiB guest has 60 MiB after the kernel's reservations, of
    /// which 32 MiB are in use with init and an idle agent (busybox free).
    /// </summary>
    public const int MinimumMemoryMiB = 96;

    public string KernelPath => Path.Combine(Directory, Manifest.Kernel);

    public string InitramfsPath => Path.Combine(Directory, Manifest.Initramfs);

    /// <summary>The read-only kit disk every VM of this kit attaches (<see cref="KitDisk"/>).</summary>
    public string KitDiskPath => Path.Combine(Directory, Manifest.KitDisk ?? throw new InvalidOperationException("no kit disk"));

    /// <summary>Refuses a guest memory size below <see cref="MinimumMemoryMiB"/>, naming the minimum.</summary>
    public static void CheckMemory(int memoryMiB)
    {
        if (memoryMiB < MinimumMemoryMiB)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{memoryMiB} MiB of guest memory is below the guest kit's minimum of {MinimumMemoryMiB} MiB: give at least {MinimumMemoryMiB}M.");
        }
    }

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
        if (manifest.KitDisk is null || manifest.KitDiskSha256 is null)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Guest kit {directory} predates the kit disk (the agent was in the initramfs): run 'vessel kit build'.");
        }
        var kit = new GuestKit(directory, manifest);
        Check(kit.KernelPath, manifest.KernelSha256, "kernel");
        Check(kit.InitramfsPath, manifest.InitramfsSha256, "initramfs");
        Check(kit.KitDiskPath, manifest.KitDiskSha256, "kit disk");
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
    DateTimeOffset Created)
{
    /// <summary>The read-only ext4 image with the agent, its runtime and libraries (file name in the kit directory).</summary>
    public string? KitDisk { get; init; }

    public string? KitDiskSha256 { get; init; }
}

[JsonSerializable(typeof(KitManifest))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class KitJsonContext : JsonSerializerContext
{
}
