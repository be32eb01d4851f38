using System.Diagnostics;
using System.Text.Json;
using Vessel.Blocks;

namespace Vessel.Service;

/// <summary>
/// A paused sandbox's snapshot in the cluster's bucket (docs/cluster.md, "Resume elsewhere"), as its
/// row's <c>remote_snapshot</c> records it: pause <see cref="Pause"/> of sandbox <see cref="Id"/>,
/// its disk layer <see cref="Layer"/> (a build under <c>builds/</c>, with every build its mapping
/// uses) and the snapshot directory's files under <c>sandboxes/&lt;id&gt;/&lt;pause&gt;/</c>, each
/// with the SHA-256 and length recorded at upload, which a fetch checks. The row, not the bucket,
/// holds the digests: a damaged or swapped object in the bucket cannot vouch for itself.
/// </summary>
internal sealed record RemoteSnapshot(int Version, string Id, int Pause, Guid Layer, Dictionary<string, S3BlobStore.BlobRef> Files)
{
    private const int MaxFiles = 16;

    /// <summary>What an upload or fetch moved: layer bytes, snapshot file bytes, the files' total size, and the time.</summary>
    public readonly record struct Transfer(long LayerBytes, long FileBytes, long FileSize, TimeSpan Elapsed);

    public string ToJson() => JsonSerializer.Serialize(this);

    /// <summary>The bucket folder of this pause's snapshot files.</summary>
    public string Root => $"sandboxes/{Id}/{Pause}/";

    /// <summary>Reads a row's <c>remote_snapshot</c> (of sandbox <paramref name="id"/>); damage is an error naming the sandbox.</summary>
    public static RemoteSnapshot Parse(string json, string id)
    {
        RemoteSnapshot? r;
        try
        {
            r = JsonSerializer.Deserialize<RemoteSnapshot>(json);
        }
        catch (JsonException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Sandbox {id}: its row's remote snapshot is not valid JSON ({e.Message}).", e);
        }
        string? problem = r switch
        {
            null => "it is empty",
            { Version: not 1 } => $"it has version {r.Version}; this Vessel reads version 1",
            { Id: var other } when other != id => $"it names sandbox '{other}'",
            { Pause: < 1 } => $"pause number {r.Pause}",
            { Files: null } => "it lists no files",
            { Files.Count: > MaxFiles } => $"it lists {r.Files.Count} files, more than {MaxFiles}",
            _ when r.Files.Keys.FirstOrDefault(f => !IsFileName(f)) is { } bad => $"'{bad}' is not a snapshot file name",
            _ when !r.Files.ContainsKey(Sandboxes.SandboxSnapshot.InfoFile) => $"it lacks {Sandboxes.SandboxSnapshot.InfoFile}",
            _ => null,
        };
        return problem is null ? r! : throw new VesselException(VesselErrorReason.Corrupt, $"Sandbox {id}: its row's remote snapshot is damaged: {problem}.");
    }

    /// <summary>
    /// Uploads pause <paramref name="pause"/> of sandbox <paramref name="id"/>: the layer chain of
    /// <paramref name="layer"/> (builds the bucket has are skipped) and every file of
    /// <paramref name="directory"/>.
    /// </summary>
    public static async Task<(RemoteSnapshot Snapshot, Transfer Moved)> UploadAsync(
        S3LayerStorage bucket, LayerStore layers, string id, int pause, Guid layer, string directory, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        LayerCopy.Result copied = await LayerCopy.CopyAsync(layers, new LayerStore(bucket), layer, null, cancellationToken);
        var files = new Dictionary<string, S3BlobStore.BlobRef>(StringComparer.Ordinal);
        var blobs = new S3BlobStore(bucket, $"sandboxes/{id}/{pause}/");
        long sent = 0;
        foreach (string path in Directory.EnumerateFiles(directory).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(path);
            if (!IsFileName(name) || File.GetAttributes(path).HasFlag(FileAttributes.ReparsePoint))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"Sandbox {id}: the snapshot directory {directory} holds '{name}', which is not a snapshot file.");
            }
            S3BlobStore.Transfer t = await blobs.PutFileAsync(path, cancellationToken);
            files[name] = t.Blob;
            sent += t.Bytes;
        }
        var snapshot = new RemoteSnapshot(1, id, pause, layer, files);
        return (snapshot, new Transfer(copied.Bytes, sent, files.Values.Sum(f => f.Length), clock.Elapsed));
    }

    /// <summary>
    /// Fetches the snapshot files into <paramref name="target"/> (made as <c>TARGET.fetch-RANDOM</c>,
    /// renamed when every file matched its digest) after checking that the disk layer is in the
    /// bucket; the layer's data stays there, read chunk by chunk when the disk is.
    /// </summary>
    public async Task<Transfer> FetchAsync(S3LayerStorage bucket, string target, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        if (await bucket.TryReadHeaderAsync(Layer, cancellationToken) is null)
        {
            throw new VesselException(VesselErrorReason.NotFound, $"Sandbox {Id}: its disk layer {Layer} (pause {Pause}) is missing from {bucket.Location}; it stays paused.");
        }
        string partial = $"{target}.fetch-{Guid.NewGuid():N}";
        Directory.CreateDirectory(partial);
        try
        {
            var blobs = new S3BlobStore(bucket, Root);
            long fetched = 0;
            foreach ((string name, S3BlobStore.BlobRef blob) in Files)
            {
                fetched += (await blobs.GetFileAsync(blob, Path.Combine(partial, name), $"Sandbox {Id}: snapshot file {name} of pause {Pause} ({bucket.Location}{Root})", cancellationToken)).Bytes;
            }
            if (Directory.Exists(target))
            {
                Directory.Delete(target, recursive: true); // a copy an earlier, interrupted fetch or this node's own pause left
            }
            Directory.Move(partial, target);
            return new Transfer(0, fetched, Files.Values.Sum(f => f.Length), clock.Elapsed);
        }
        finally
        {
            if (Directory.Exists(partial))
            {
                Directory.Delete(partial, recursive: true);
            }
        }
    }

    /// <summary>Deletes this pause's snapshot files from the bucket (not its layer: the sandbox's disk reads it).</summary>
    public Task DeleteFilesAsync(S3LayerStorage bucket, CancellationToken cancellationToken) => bucket.DeletePrefixAsync(bucket.KeyOf(Root), cancellationToken);

    private static bool IsFileName(string name)
        => name is { Length: > 0 and <= 64 } && name[0] != '.' && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');
}
