using System.Text.Json;
using System.Text.Json.Serialization;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.Sandboxes;
using Vessel.State;

namespace Vessel.Templates;

/// <summary>
/// Moves a built template between a home and a bucket (docs/formats/block-layer.md, "Object
/// storage"): its layer chain as builds, its snapshot's files as content-addressed blobs, and a
/// manifest <c>PREFIX/templates/&lt;name&gt;</c> written last, so a template is in the bucket only
/// when all it needs is. A pull checks every chunk and file, writes the snapshot under a temp
/// name, and records the template only when its layers and snapshot are in place.
/// </summary>
internal sealed class TemplateTransfer(StateStore state, LayerStore local, VesselHome home)
{
    private static readonly JsonSerializerOptions s_json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>
    /// Chunk size of a snapshot's memory in the bucket: a restore that maps it lazily fetches whole
    /// chunks as the guest touches pages scattered over its RAM, so smaller than a layer's 4 MiB
    /// (docs/BENCHMARKS.md, "A 1 GiB template on an empty node", compares sizes).
    /// </summary>
    internal const int MemoryChunkSize = 256 << 10;

    private static readonly string[] s_snapshotFiles = [SandboxSnapshot.InfoFile, SandboxSnapshot.StateFile, SandboxSnapshot.MemoryFile];

    /// <summary>What a push or pull moved.</summary>
    public sealed record Result(string Name, int BuildsCopied, int BuildsSkipped, long LayerBytes, long SnapshotBytes, long SnapshotSize, TimeSpan Elapsed);

    /// <summary>The manifest's shape (version 1): the template's row (its local snapshot path left out) and its snapshot's files.</summary>
    internal sealed record Manifest(int Version, TemplateRecord Template, ManifestSnapshot? Snapshot);

    internal sealed record ManifestSnapshot(string Directory, Dictionary<string, S3BlobStore.BlobRef> Files);

    public async Task<Result> PushAsync(string name, S3LayerStorage bucket, CancellationToken cancellationToken)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        TemplateRecord record = await state.GetTemplateAsync(CheckName(name), cancellationToken)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"there is no template named '{name}' (see 'vessel template ls').");
        LayerCopy.Result layers = await LayerCopy.CopyAsync(local, new LayerStore(bucket), record.LayerBuildId, null, cancellationToken);
        ManifestSnapshot? snapshot = null;
        long sent = 0, size = 0;
        if (record.SnapshotDirectory is { } dir && Directory.Exists(dir))
        {
            var blobs = new S3BlobStore(bucket);
            var files = new Dictionary<string, S3BlobStore.BlobRef>(StringComparer.Ordinal);
            foreach (string file in s_snapshotFiles.Where(f => File.Exists(Path.Combine(dir, f))))
            {
                S3BlobStore.Transfer t = file == SandboxSnapshot.MemoryFile
                    ? await blobs.PutFileAsync(Path.Combine(dir, file), MemoryChunkSize, cancellationToken)
                    : await blobs.PutFileAsync(Path.Combine(dir, file), cancellationToken);
                files[file] = t.Blob;
                sent += t.Bytes;
                size += t.Blob.Length;
            }
            snapshot = new ManifestSnapshot(Path.GetFileName(dir), files);
        }
        var manifest = new Manifest(1, record with { SnapshotDirectory = null }, snapshot);
        await bucket.PutAsync(bucket.KeyOf(ManifestKey(name)), JsonSerializer.SerializeToUtf8Bytes(manifest, s_json), cancellationToken);
        return new Result(name, layers.Builds, layers.Skipped, layers.Bytes, sent, size, clock.Elapsed);
    }

    /// <summary>
    /// Fetches template <paramref name="name"/>; with <paramref name="lazy"/> its layers and its
    /// snapshot's memory stay in the bucket (the home's store must read through to it:
    /// <see cref="TieredLayerStorage"/>; a restore maps the memory through <see cref="RemoteMemory"/>).
    /// </summary>
    public async Task<Result> PullAsync(string name, S3LayerStorage bucket, bool lazy, CancellationToken cancellationToken)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Manifest manifest = await ReadManifestAsync(CheckName(name), bucket, cancellationToken);
        LayerCopy.Result layers = lazy
            ? await CheckChainAsync(new LayerStore(bucket), manifest.Template.LayerBuildId, cancellationToken)
            : await LayerCopy.CopyAsync(new LayerStore(bucket), local, manifest.Template.LayerBuildId, null, cancellationToken);
        (string? snapshotDirectory, long fetched, long size) = manifest.Snapshot is { } s
            ? await PullSnapshotAsync(name, s, bucket, lazy, cancellationToken)
            : (null, 0, 0);
        await state.PutTemplateAsync(manifest.Template with { SnapshotDirectory = snapshotDirectory }, cancellationToken);
        return new Result(name, layers.Builds, layers.Skipped, layers.Bytes, fetched, size, clock.Elapsed);
    }

    /// <summary>Every build of the chain is in the bucket (headers only): a lazy pull copies nothing.</summary>
    private static async Task<LayerCopy.Result> CheckChainAsync(LayerStore bucket, Guid buildId, CancellationToken cancellationToken)
    {
        BuildHeader top = await bucket.ReadHeaderAsync(buildId, cancellationToken);
        foreach (Guid id in top.ReferencedBuilds.Where(g => g != buildId))
        {
            await bucket.ReadHeaderAsync(id, cancellationToken);
        }
        return new LayerCopy.Result(0, 0, 0);
    }

    /// <summary>The names of the templates in <paramref name="bucket"/>.</summary>
    public static async Task<IReadOnlyList<string>> ListAsync(S3LayerStorage bucket, CancellationToken cancellationToken)
        => (await bucket.ListKeysAsync("templates/", cancellationToken))
            .Select(k => k["templates/".Length..])
            .Where(TemplateSpecValidator.IsValidName)
            .Order(StringComparer.Ordinal)
            .ToList();

    internal static string ManifestKey(string name) => "templates/" + name;

    private static string CheckName(string name) => TemplateSpecValidator.IsValidName(name) ? name
        : throw new VesselException(VesselErrorReason.InvalidInput, $"'{name}' is not a template name: 1-63 characters, lowercase letters, digits, '.', '_' or '-', starting with a letter or digit.");

    private static async Task<Manifest> ReadManifestAsync(string name, S3LayerStorage bucket, CancellationToken cancellationToken)
    {
        string what = $"template '{name}' in {bucket.Location}";
        byte[] raw = await bucket.TryGetAsync(bucket.KeyOf(ManifestKey(name)), cancellationToken, 16 << 20)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"there is no template named '{name}' in {bucket.Location} (push it with 'vessel template push').");
        Manifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<Manifest>(raw, s_json);
        }
        catch (JsonException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"{what}: the manifest is not valid JSON ({e.Message}).", e);
        }
        string? problem = manifest switch
        {
            null => "the manifest is empty",
            { Version: not 1 } => $"the manifest has version {manifest.Version}; this Vessel reads version 1",
            { Template: null } => "the manifest lacks its template",
            { Template.Name: var other } when other != name => $"the manifest names template '{other}'",
            { Template: { SpecJson: null } or { ConfigJson: null } or { FinalHash: null } } => "the manifest lacks its spec, config or hash",
            { Template.DiskSizeBytes: <= 0 } => $"the manifest gives a disk of {manifest.Template.DiskSizeBytes} bytes",
            { Snapshot: { } s } when !IsSnapshotName(s.Directory) => $"the snapshot directory '{s.Directory}' is not a snapshot name",
            { Snapshot: { } s } when s.Files is null || s.Files.Keys.Any(f => !s_snapshotFiles.Contains(f)) || !s.Files.ContainsKey(SandboxSnapshot.InfoFile) || !s.Files.ContainsKey(SandboxSnapshot.StateFile)
                => $"the snapshot lists files other than {string.Join(", ", s_snapshotFiles)} or lacks {SandboxSnapshot.InfoFile}/{SandboxSnapshot.StateFile}",
            _ => null,
        };
        return problem is null ? manifest! : throw new VesselException(VesselErrorReason.Corrupt, $"{what}: {problem}.");
    }

    /// <summary>
    /// Writes the snapshot's files (with <paramref name="lazy"/>: all but <c>memory</c>, for which a
    /// reference is written once its chunk index is found) under a temp name, then renames it into place.
    /// </summary>
    private async Task<(string Directory, long Fetched, long Size)> PullSnapshotAsync(string name, ManifestSnapshot snapshot, S3LayerStorage bucket, bool lazy, CancellationToken cancellationToken)
    {
        string target = Path.Combine(home.Snapshots, snapshot.Directory);
        if (await SameSnapshotAsync(target, snapshot, lazy, cancellationToken))
        {
            return (target, 0, snapshot.Files.Values.Sum(f => f.Length));
        }
        Directory.CreateDirectory(home.Snapshots);
        string partial = target + ".pull-" + Guid.NewGuid().ToString("N")[..8];
        Directory.CreateDirectory(partial);
        try
        {
            var blobs = new S3BlobStore(bucket);
            long fetched = 0;
            foreach ((string file, S3BlobStore.BlobRef blob) in snapshot.Files)
            {
                string what = $"template '{name}' snapshot file {file}";
                if (lazy && file == SandboxSnapshot.MemoryFile)
                {
                    // Left in the bucket: its index is read now, so a missing blob fails the pull, not a start.
                    (await blobs.OpenAsync(blob, what, null, cancellationToken)).Dispose();
                    await RemoteMemory.WriteReferenceAsync(partial, blob, cancellationToken);
                    continue;
                }
                fetched += (await blobs.GetFileAsync(blob, Path.Combine(partial, file), what, cancellationToken)).Bytes;
            }
            if (Directory.Exists(target))
            {
                Directory.Delete(target, recursive: true); // an incomplete or different copy under the same name
            }
            Directory.Move(partial, target);
            return (target, fetched, snapshot.Files.Values.Sum(f => f.Length));
        }
        finally
        {
            if (Directory.Exists(partial))
            {
                Directory.Delete(partial, recursive: true);
            }
        }
    }

    /// <summary>
    /// True when <paramref name="directory"/> already holds exactly the snapshot's files (a second
    /// pull); with <paramref name="lazy"/>, a reference to the same memory blob stands for <c>memory</c>.
    /// </summary>
    private static async Task<bool> SameSnapshotAsync(string directory, ManifestSnapshot snapshot, bool lazy, CancellationToken cancellationToken)
    {
        foreach ((string file, S3BlobStore.BlobRef blob) in snapshot.Files)
        {
            string path = Path.Combine(directory, file);
            if (lazy && file == SandboxSnapshot.MemoryFile && !File.Exists(path) && Directory.Exists(directory))
            {
                try
                {
                    if (await RemoteMemory.TryReadReferenceAsync(directory, cancellationToken) != blob)
                    {
                        return false;
                    }
                }
                catch (VesselException)
                {
                    return false; // a damaged reference: pulled again
                }
                continue;
            }
            if (!File.Exists(path) || new FileInfo(path).Length != blob.Length)
            {
                return false;
            }
            await using FileStream stream = File.OpenRead(path);
            if (Convert.ToHexStringLower(await System.Security.Cryptography.SHA256.HashDataAsync(stream, cancellationToken)) != blob.Sha256)
            {
                return false;
            }
        }
        return true;
    }

    private static bool IsSnapshotName(string? name)
        => name is { Length: > 0 and <= 80 } && name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-');
}
