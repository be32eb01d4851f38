using Vessel.Ext4;
using Vessel.Oci;
using Vessel.Rootfs;
using Vessel.Tar;

namespace Vessel.Containerd;

/// <summary>
/// Copies a few files out of an image's layers as containerd stores them, without unpacking
/// the image: each layer streams from the content store through <see cref="ContainerdImageSource"/>
/// (digest and diff_id checked, decompressed as every image source is), top layer first, read
/// by Vessel's <see cref="TarReader"/>, and only the metadata of entries is kept. Entry names
/// follow <see cref="LayerApplier.SplitPath"/>'s rules and whiteouts <see cref="Whiteout"/>'s
/// (image-spec layer.md); a non-directory hides everything a lower layer has below it. Symlinks are resolved in the
/// image's namespace, never on the host, and only regular files are copied.
/// </summary>
internal sealed class LayerExtractor
{
    private readonly ContainerdClient _client;
    private readonly ContainerdImage _image;
    private readonly IProgress<string>? _progress;

    // Visible entries, by cleaned path, the topmost layer winning.
    private readonly Dictionary<string, Entry> _index = new(StringComparer.Ordinal);

    // Paths hidden (with everything below) from lower layers: whiteouts and non-directories.
    private readonly HashSet<string> _hiddenWithChildren = new(StringComparer.Ordinal);

    // Directories whose lower-layer children are hidden: opaque directories.
    private readonly HashSet<string> _hiddenChildren = new(StringComparer.Ordinal);

    // Paths deleted by a whiteout, with the layer that deleted them, for error messages.
    private readonly Dictionary<string, int> _deleted = new(StringComparer.Ordinal);

    public LayerExtractor(ContainerdClient client, ContainerdImage image, IProgress<string>? progress)
    {
        _client = client;
        _image = image;
        _progress = progress;
    }

    /// <summary>
    /// Writes each requested image path's content into its target file, which must exist
    /// (created empty by the caller). Throws NotFound naming the file and the image when the
    /// image lacks one.
    /// </summary>
    public async Task ExtractAsync(IReadOnlyDictionary<string, string> targetsByImagePath, CancellationToken cancellationToken)
    {
        await using var source = new ContainerdImageSource(_client, _image.Name, _image.Target);
        await source.ResolveAsync(cancellationToken);

        // Pass 1: every layer, top first, for metadata; files found at their literal path are copied on the way.
        var captured = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int layer = _image.Layers.Count - 1; layer >= 0; layer--)
        {
            var layerEntries = new Dictionary<string, Entry>(StringComparer.Ordinal);
            var whiteouts = new List<string>();
            var opaques = new List<string>();
            int index = layer;
            await ReadLayerAsync(source, layer, async (name, entry, reader) =>
            {
                string baseName = name[(name.LastIndexOf('/') + 1)..];
                string parent = name[..Math.Max(name.LastIndexOf('/'), 0)];
                switch (Whiteout.Classify(baseName, LayerWhat(index), out string deleted))
                {
                    case WhiteoutKind.Opaque:
                        opaques.Add(parent.Length == 0 ? "/" : parent);
                        return;
                    case WhiteoutKind.Remove:
                        whiteouts.Add(parent + "/" + deleted);
                        return;
                    case WhiteoutKind.Reserved:
                        return;
                }
                if (_index.ContainsKey(name) || IsHidden(name))
                {
                    return;
                }
                var e = new Entry(index, entry.Type, entry.Type is TarEntryType.SymbolicLink or TarEntryType.HardLink ? entry.LinkName : null);
                layerEntries[name] = e;
                if (e.IsRegular && targetsByImagePath.TryGetValue(name, out string? target))
                {
                    await CopyAsync(reader, entry, target, cancellationToken);
                    captured[name] = index;
                }
            }, cancellationToken);

            foreach (var (name, e) in layerEntries)
            {
                _index[name] = e;
                if (e.Type != TarEntryType.Directory)
                {
                    _hiddenWithChildren.Add(name);
                }
            }
            foreach (string w in whiteouts)
            {
                _hiddenWithChildren.Add(w);
                _deleted.TryAdd(w, index);
            }
            foreach (string o in opaques)
            {
                _hiddenChildren.Add(o);
            }
        }

        // Resolve each request in the merged tree; what pass 1 did not copy is read again from its layer.
        var second = new Dictionary<int, Dictionary<string, List<string>>>();
        foreach (var (path, target) in targetsByImagePath)
        {
            (int layer, string dataPath) = Resolve(path);
            if (dataPath == path && captured.TryGetValue(path, out int l) && l == layer)
            {
                continue;
            }
            if (!second.TryGetValue(layer, out var wanted))
            {
                second[layer] = wanted = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            }
            if (!wanted.TryGetValue(dataPath, out var list))
            {
                wanted[dataPath] = list = [];
            }
            list.Add(target);
        }
        foreach (var (layer, wanted) in second.OrderByDescending(p => p.Key))
        {
            var found = new HashSet<string>(StringComparer.Ordinal);
            await ReadLayerAsync(source, layer, async (name, entry, reader) =>
            {
                if (wanted.TryGetValue(name, out var targets) && entry.IsRegularFile)
                {
                    // One pass over the entry's data fills the first target; the others are copies of it.
                    await CopyAsync(reader, entry, targets[0], cancellationToken);
                    foreach (string t in targets.Skip(1))
                    {
                        File.Copy(targets[0], t, overwrite: true);
                        SetPermissions(t, entry.Mode);
                    }
                    found.Add(name);
                }
            }, cancellationToken);
            foreach (string missing in wanted.Keys.Where(k => !found.Contains(k)))
            {
                throw new VesselException(VesselErrorReason.Corrupt,
                    $"Image '{_image.Name}' layer {layer + 1}: hard link target '{missing}' is not a regular file in that layer.");
            }
        }
    }

    /// <summary>Finds the layer and in-layer path holding the data of <paramref name="requested"/>, following symlinks and hard links inside the image.</summary>
    private (int Layer, string DataPath) Resolve(string requested)
    {
        var pending = new Stack<string>(ImagePath.Split(requested).Reverse());
        var resolved = new List<string>();
        int links = 0;
        while (pending.Count > 0)
        {
            string part = pending.Pop();
            if (part == "." || part.Length == 0)
            {
                continue;
            }
            if (part == "..")
            {
                if (resolved.Count > 0)
                {
                    resolved.RemoveAt(resolved.Count - 1);
                }
                continue;
            }
            string current = "/" + string.Join('/', resolved.Append(part));
            bool last = pending.Count == 0;
            if (_index.TryGetValue(current, out Entry e))
            {
                if (e.Type == TarEntryType.SymbolicLink)
                {
                    if (++links > ImagePath.MaxSymlinks)
                    {
                        throw new VesselException(VesselErrorReason.InvalidInput, $"'{requested}' in image '{_image.Name}': too many levels of symbolic links.");
                    }
                    string link = e.Link ?? string.Empty;
                    if (link.StartsWith('/'))
                    {
                        resolved.Clear();
                    }
                    foreach (string p in ImagePath.Split(link).Reverse())
                    {
                        pending.Push(p);
                    }
                    continue;
                }
                if (last)
                {
                    if (e.IsRegular)
                    {
                        return (e.Layer, current);
                    }
                    if (e.Type == TarEntryType.HardLink)
                    {
                        return (e.Layer, ImagePath.Clean(e.Link ?? string.Empty));
                    }
                    throw new VesselException(VesselErrorReason.InvalidInput,
                        $"'{requested}' in image '{_image.Name}' is {(e.Type == TarEntryType.Directory ? "a directory" : "not a regular file")}.");
                }
                if (e.Type != TarEntryType.Directory)
                {
                    throw ImagePath.Missing(requested, _image.Name, current + " (not a directory)");
                }
            }
            else if (last || !_index.Keys.Any(k => k.StartsWith(current + "/", StringComparison.Ordinal)))
            {
                // A directory a tar leaves implicit exists when something visible lies below it.
                if (_deleted.TryGetValue(current, out int layer))
                {
                    throw new VesselException(VesselErrorReason.NotFound,
                        $"Image '{_image.Name}' has no file '{requested}': layer {layer + 1} of {_image.Layers.Count} deletes {current} (whiteout).");
                }
                throw ImagePath.Missing(requested, _image.Name, current);
            }
            resolved.Add(part);
        }
        throw new VesselException(VesselErrorReason.InvalidInput, $"'{requested}' in image '{_image.Name}' resolves to the image root, not a file.");
    }

    private bool IsHidden(string path)
    {
        if (_hiddenWithChildren.Contains(path))
        {
            return true;
        }
        int slash = path.LastIndexOf('/');
        while (slash > 0)
        {
            string ancestor = path[..slash];
            if (_hiddenWithChildren.Contains(ancestor) || _hiddenChildren.Contains(ancestor))
            {
                return true;
            }
            slash = ancestor.LastIndexOf('/');
        }
        return _hiddenChildren.Contains("/");
    }

    /// <summary>Streams one layer and calls <paramref name="onEntry"/> with each entry's cleaned absolute path; reads to the end so the digests are checked.</summary>
    private async Task ReadLayerAsync(ContainerdImageSource source, int layer, Func<string, TarEntry, TarReader, Task> onEntry, CancellationToken cancellationToken)
    {
        LayerDescriptor descriptor = _image.Layers[layer];
        string what = LayerWhat(layer);
        _progress?.Report($"extract: reading layer {layer + 1}/{_image.Layers.Count} ({Common.ByteSize.Format(descriptor.Size)}, {descriptor.Digest[..19]})");
        try
        {
            await using Stream tar = await source.OpenLayerAsync(layer, cancellationToken);
            using var reader = new TarReader(tar, what, bufferSize: 64 << 10);
            while (await reader.NextAsync(cancellationToken) is { } entry)
            {
                List<string> parts = LayerApplier.SplitPath(entry.NameBytes, what);
                if (parts.Count > 0)
                {
                    await onEntry("/" + string.Join('/', parts.Select(FsInode.Display)), entry, reader);
                }
            }
            // Padding after the end blocks: read to the end so the blob and diff_id digests are checked.
            await reader.DrainAsync(cancellationToken);
        }
        catch (InvalidDataException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Image '{_image.Name}' layer {layer + 1}: {e.Message}", e);
        }
    }

    private string LayerWhat(int layer) => $"layer {layer + 1} of {_image.Layers.Count} of '{_image.Name}'";

    private static async Task CopyAsync(TarReader reader, TarEntry entry, string target, CancellationToken cancellationToken)
    {
        // The target exists (made by the caller, recorded for cleanup); truncate and fill it.
        await using (var output = new FileStream(target, FileMode.Truncate, FileAccess.Write, FileShare.None))
        {
            // A sparse entry's data is its regions packed one after another; holes stay unwritten.
            IReadOnlyList<(long Offset, long Length)> regions = entry.SparseMap ?? [(0, entry.DataLength)];
            foreach ((long offset, long length) in regions)
            {
                output.Position = offset;
                for (long left = length; left > 0;)
                {
                    ReadOnlyMemory<byte> chunk = await reader.ReadDataChunkAsync(cancellationToken);
                    int take = (int)Math.Min(chunk.Length, left);
                    await output.WriteAsync(chunk[..take], cancellationToken);
                    left -= take;
                    if (take < chunk.Length)
                    {
                        throw new InvalidDataException($"entry '{entry.Name}': sparse map and data length disagree");
                    }
                }
            }
            output.SetLength(entry.Size);
        }
        SetPermissions(target, entry.Mode);
    }

    /// <summary>Permission bits only: never setuid, setgid or sticky from an image.</summary>
    private static void SetPermissions(string path, int mode)
    {
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, (UnixFileMode)(mode & 0x1FF));
        }
    }

    private readonly record struct Entry(int Layer, TarEntryType Type, string? Link)
    {
        public bool IsRegular => Type is TarEntryType.RegularFile or TarEntryType.OldRegularFile or TarEntryType.ContiguousFile or TarEntryType.GnuSparse;
    }
}
