using System.Runtime.CompilerServices;
using System.Text.Json;
using Vessel.Blocks;
using Vessel.Nbd;

namespace Vessel.Sandboxes;

/// <summary>
/// A template snapshot's guest RAM left in the bucket by <c>vessel template pull --lazy</c>
/// (docs/formats/sandbox-snapshot.md, "Memory in the bucket"): the snapshot directory holds
/// <see cref="SandboxSnapshot.RemoteMemoryFile"/> (the blob's SHA-256 and length) instead of
/// <c>memory</c>, and a restore mounts the blob as a file (<see cref="RemoteMemoryDevice"/>
/// served by an in-process NBD server to <c>nbdfuse</c>) that QEMU maps with <c>share=off</c>:
/// the guest's page faults fetch and verify chunks as it touches them. Owned by the sandbox that
/// maps it; <see cref="DisposeAsync"/> (after the VM is gone) unmounts and stops the server.
/// </summary>
internal sealed class RemoteMemory : IAsyncDisposable
{
    private static readonly JsonSerializerOptions s_json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };
    private readonly RemoteMemoryDevice _device;
    private readonly NbdFuseFile _view;
    private readonly StrongBox<long> _fetched;

    private RemoteMemory(RemoteMemoryDevice device, NbdFuseFile view, StrongBox<long> fetched)
        => (_device, _view, _fetched) = (device, view, fetched);

    /// <summary>The file QEMU maps as guest RAM.</summary>
    public string FilePath => _view.FilePath;

    /// <summary>Bytes this mapping fetched from the bucket (chunks the node's cache did not have).</summary>
    public long FetchedBytes => Interlocked.Read(ref _fetched.Value);

    /// <summary>The first read that failed, naming the object; null while every read succeeded.</summary>
    public VesselException? Failure => _device.Failure;

    /// <summary>The reference in <paramref name="snapshotDirectory"/>, or null when its memory is a local file.</summary>
    public static async Task<S3BlobStore.BlobRef?> TryReadReferenceAsync(string snapshotDirectory, CancellationToken cancellationToken)
    {
        string path = Path.Combine(snapshotDirectory, SandboxSnapshot.RemoteMemoryFile);
        if (!File.Exists(path))
        {
            return null;
        }
        try
        {
            return JsonSerializer.Deserialize<S3BlobStore.BlobRef>(await File.ReadAllBytesAsync(path, cancellationToken), s_json)
                ?? throw new JsonException("empty");
        }
        catch (JsonException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Snapshot {snapshotDirectory}: {SandboxSnapshot.RemoteMemoryFile} is not valid ({e.Message}); pull the template again.", e);
        }
    }

    /// <summary>Writes the reference to <paramref name="blob"/> into <paramref name="snapshotDirectory"/>.</summary>
    public static Task WriteReferenceAsync(string snapshotDirectory, S3BlobStore.BlobRef blob, CancellationToken cancellationToken)
        => File.WriteAllBytesAsync(Path.Combine(snapshotDirectory, SandboxSnapshot.RemoteMemoryFile), JsonSerializer.SerializeToUtf8Bytes(blob, s_json), cancellationToken);

    /// <summary>
    /// Mounts <paramref name="blob"/> of <paramref name="bucket"/> under <paramref name="workDirectory"/>
    /// (the sandbox's directory); it must be exactly <paramref name="memoryMiB"/> MiB, the VM's RAM.
    /// </summary>
    public static async Task<RemoteMemory> MountAsync(S3LayerStorage bucket, S3BlobStore.BlobRef blob, int memoryMiB, string what, string workDirectory, CancellationToken cancellationToken)
    {
        if (blob.Length != (long)memoryMiB << 20)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"{what}: blob {blob.Sha256} has {blob.Length} bytes; the snapshot's {memoryMiB} MiB of RAM need {(long)memoryMiB << 20}.");
        }
        var fetched = new StrongBox<long>();
        S3LayerData data = await new S3BlobStore(bucket).OpenAsync(blob, what, n => Interlocked.Add(ref fetched.Value, n), cancellationToken);
        var device = new RemoteMemoryDevice(data, $"{what} (blob {blob.Sha256} in {bucket.Location})");
        try
        {
            NbdFuseFile view = await NbdFuseFile.MountAsync(device, workDirectory, cancellationToken);
            return new RemoteMemory(device, view, fetched);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _view.DisposeAsync();
        }
        finally
        {
            _device.Dispose();
        }
    }
}
