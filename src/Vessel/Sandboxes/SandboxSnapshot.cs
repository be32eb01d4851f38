using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vessel.Sandboxes;

/// <summary>
/// A paused sandbox on disk (docs/formats/sandbox-snapshot.md): <c>memory</c> (guest RAM, the
/// shared memory-backend file), <c>state</c> (QEMU's device state, RAM excluded by
/// x-ignore-shared) and <c>snapshot.json</c> (this record). A restore needs the same VM shape
/// and the same guest kit, so both are recorded and checked.
/// </summary>
public sealed record SandboxSnapshot(
    int Version,
    int MemoryMiB,
    int Vcpus,
    string KitId,
    string Token,
    DateTimeOffset Created)
{
    public const int CurrentVersion = 1;
    public const string MemoryFile = "memory";
    public const string StateFile = "state";
    public const string InfoFile = "snapshot.json";

    /// <summary>Instead of <see cref="MemoryFile"/>: where the RAM is in the bucket (a lazily pulled template, <see cref="RemoteMemory"/>).</summary>
    public const string RemoteMemoryFile = "memory.remote";

    /// <summary>
    /// True for a paused sandbox (<see cref="Sandbox.PauseAsync"/>): its RAM is in the state stream,
    /// there is no memory file, and the restoring VM gets a named RAM backend (<c>mem0</c>).
    /// </summary>
    public bool MemoryInState { get; init; }

    private static readonly JsonSerializerOptions s_json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public static async Task<SandboxSnapshot> ReadAsync(string directory, CancellationToken cancellationToken)
    {
        string info = Path.Combine(directory, InfoFile);
        foreach (string f in new[] { info, Path.Combine(directory, StateFile) })
        {
            if (!File.Exists(f))
            {
                throw new VesselException(VesselErrorReason.NotFound, $"Snapshot {directory} is incomplete: {Path.GetFileName(f)} is missing; rebuild the template.");
            }
        }
        SandboxSnapshot? snapshot;
        try
        {
            await using FileStream stream = File.OpenRead(info);
            snapshot = await JsonSerializer.DeserializeAsync<SandboxSnapshot>(stream, s_json, cancellationToken);
        }
        catch (JsonException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Snapshot {directory}: {InfoFile} is not valid ({e.Message}); rebuild the template.", e);
        }
        if (snapshot is null || snapshot.Version != CurrentVersion || snapshot.MemoryMiB <= 0 || snapshot.Vcpus <= 0 || string.IsNullOrEmpty(snapshot.Token))
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Snapshot {directory}: {InfoFile} is not a version {CurrentVersion} snapshot; rebuild the template.");
        }
        if (!snapshot.MemoryInState && !File.Exists(Path.Combine(directory, MemoryFile)) && !File.Exists(Path.Combine(directory, RemoteMemoryFile)))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"Snapshot {directory} is incomplete: {MemoryFile} is missing; rebuild the template.");
        }
        return snapshot;
    }

    /// <summary>
    /// The kit id that <see cref="InfoFile"/> records, without the checks a restore needs (a snapshot
    /// missing a file still pins its kit for <c>vessel gc</c>); null when there is no readable record.
    /// </summary>
    public static async Task<string?> TryReadKitIdAsync(string directory, CancellationToken cancellationToken)
    {
        try
        {
            await using FileStream stream = File.OpenRead(Path.Combine(directory, InfoFile));
            SandboxSnapshot? snapshot = await JsonSerializer.DeserializeAsync<SandboxSnapshot>(stream, s_json, cancellationToken);
            return string.IsNullOrEmpty(snapshot?.KitId) ? null : snapshot.KitId;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }

    public async Task WriteAsync(string directory, CancellationToken cancellationToken)
    {
        string path = Path.Combine(directory, InfoFile);
        await using (FileStream stream = new(path, FileMode.CreateNew, FileAccess.Write))
        {
            await JsonSerializer.SerializeAsync(stream, this, s_json, cancellationToken);
        }
        if (OperatingSystem.IsLinux())
        {
            // The token opens the agent of every sandbox restored from this snapshot.
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }
}
