using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vessel.Shim;

/// <summary>
/// What the shim holds for a bundle, written to <c>BUNDLE/vessel-shim.json</c> before each step
/// that creates something, so that <c>containerd-shim-vessel-v1 delete</c> (containerd's call
/// after a shim crash) releases exactly that: the rootfs mount, the VM's sandbox directory
/// (its VMM is killed only while its command line names that directory), the ext4 image.
/// </summary>
internal sealed record ShimState
{
    public const string FileName = "vessel-shim.json";

    /// <summary>True once the rootfs mounts were (about to be) mounted at BUNDLE/rootfs.</summary>
    public bool RootfsMounted { get; init; }

    /// <summary>The VM's rootfs image (an ext4 the shim wrote from the mounted rootfs).</summary>
    public string? RootfsImage { get; init; }

    /// <summary>True once boot artifacts may be fetched (the shim's config enables them): their own state is BUNDLE/vessel-artifacts.json.</summary>
    public bool BootArtifacts { get; init; }

    /// <summary>Vessel's home, whose sandboxes/ holds the VM's directory.</summary>
    public string? Home { get; init; }

    /// <summary>The sandbox's directory, once the VM was created.</summary>
    public string? SandboxDirectory { get; init; }

    /// <summary>The QEMU pid, once it runs.</summary>
    public int? VmmPid { get; init; }

    public static ShimState? Read(string bundle)
    {
        string path = Path.Combine(bundle, FileName);
        if (!File.Exists(path))
        {
            return null;
        }
        return JsonSerializer.Deserialize(File.ReadAllBytes(path), ShimStateJson.Default.ShimState);
    }

    /// <summary>Writes the state (to a temporary name, then renamed: a crash leaves the old or the new one).</summary>
    public void Write(string bundle)
    {
        string path = Path.Combine(bundle, FileName);
        File.WriteAllBytes(path + ".tmp", JsonSerializer.SerializeToUtf8Bytes(this, ShimStateJson.Default.ShimState));
        File.Move(path + ".tmp", path, overwrite: true);
    }

    public static void Remove(string bundle) => File.Delete(Path.Combine(bundle, FileName));
}

[JsonSerializable(typeof(ShimState))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class ShimStateJson : JsonSerializerContext
{
}
