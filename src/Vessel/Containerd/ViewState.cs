using System.Text.Json;
using System.Text.Json.Serialization;
using Vessel.Interop;

namespace Vessel.Containerd;

/// <summary>
/// What <c>vessel containerd artifacts</c> created for one bundle, written to the bundle
/// before each thing it records exists (docs/formats/containerd-view-state.md). Cleanup reads
/// only this file, so it works from another process and after a crash at any point.
/// </summary>
internal sealed class ViewState
{
    public const int CurrentVersion = 1;
    public const string FileName = "vessel-artifacts.json";
    public const string MountDirectoryName = "vessel-view";
    public const string LockFileName = "vessel-artifacts.lock";

    public int Version { get; set; } = CurrentVersion;

    /// <summary>"view" or "extract".</summary>
    public string Mode { get; set; } = "view";

    /// <summary>"preparing" until every artifact is in place, then "ready".</summary>
    public string Phase { get; set; } = "preparing";

    public string Address { get; set; } = string.Empty;

    public string Namespace { get; set; } = string.Empty;

    public string Snapshotter { get; set; } = ContainerdClient.DefaultSnapshotter;

    public string Image { get; set; } = string.Empty;

    public string? ChainId { get; set; }

    public string? LeaseId { get; set; }

    public string? ViewKey { get; set; }

    /// <summary>Where the view is mounted (inside the bundle).</summary>
    public string? Mountpoint { get; set; }

    /// <summary>The mounts containerd returned for the view.</summary>
    public List<MountRecord> Mounts { get; set; } = [];

    public string OutDirectory { get; set; } = string.Empty;

    public List<FileRecord> Files { get; set; } = [];

    /// <summary>Files and directories Vessel created under the output directory, in creation order.</summary>
    public List<string> Created { get; set; } = [];

    public static string PathIn(string bundle) => Path.Combine(bundle, FileName);

    /// <summary>Reads the state of <paramref name="bundle"/>, or null when there is none.</summary>
    public static ViewState? Load(string bundle)
    {
        string path = PathIn(bundle);
        if (!File.Exists(path))
        {
            return null;
        }
        ViewState? state;
        try
        {
            state = JsonSerializer.Deserialize(File.ReadAllBytes(path), ViewStateJsonContext.Default.ViewState);
        }
        catch (JsonException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"{path} is not a Vessel view state file: {e.Message}", e);
        }
        if (state is null || state.Version != CurrentVersion)
        {
            throw new VesselException(VesselErrorReason.Unsupported,
                $"{path} has state version {state?.Version}; this Vessel reads version {CurrentVersion}.");
        }
        return state;
    }

    /// <summary>
    /// Writes the state atomically: a temporary file in the bundle, fsync, rename over the old
    /// file, fsync the directory. A crash leaves either the old or the new state, never half.
    /// </summary>
    public void Save(string bundle)
    {
        string path = PathIn(bundle);
        string temp = path + ".tmp";
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(this, ViewStateJsonContext.Default.ViewState);
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(json);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        SyncDirectory(bundle);
    }

    public static void Delete(string bundle)
    {
        File.Delete(PathIn(bundle));
        File.Delete(PathIn(bundle) + ".tmp");
        SyncDirectory(bundle);
    }

    private static void SyncDirectory(string directory) => UnixFile.FsyncDirectory(directory);
}

/// <summary>One mount of the view, as containerd described it.</summary>
internal sealed class MountRecord
{
    public string Type { get; set; } = string.Empty;

    public string Source { get; set; } = string.Empty;

    public List<string> Options { get; set; } = [];
}

/// <summary>One requested artifact.</summary>
internal sealed class FileRecord
{
    /// <summary>The path asked for, cleaned ("/boot/vmlinuz").</summary>
    public string Path { get; set; } = string.Empty;

    /// <summary>Where it appears on the host (under the output directory).</summary>
    public string Target { get; set; } = string.Empty;
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(ViewState))]
internal sealed partial class ViewStateJsonContext : JsonSerializerContext
{
}
