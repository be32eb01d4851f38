using System.Formats.Tar;
using System.IO.Compression;

namespace Vessel.Containerd;

/// <summary>
/// Copies a few files out of an image's layers as containerd stores them, without unpacking
/// the image: each layer streams from the content store (digest checked), top layer first,
/// and only the metadata of entries is kept. Whiteouts (".wh.NAME") and opaque directories
/// (".wh..wh..opq") hide what lower layers hold, as the OCI image spec (layer.md) says; a
/// non-directory hides everything a lower layer has below it. Symlinks are resolved in the
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
        // Pass 1: every layer, top first, for metadata; files found at their literal path are copied on the way.
        var captured = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int layer = _image.Layers.Count - 1; layer >= 0; layer--)
        {
            var layerEntries = new Dictionary<string, Entry>(StringComparer.Ordinal);
            var whiteouts = new List<string>();
            var opaques = new List<string>();
            int index = layer;
            await ReadLayerAsync(layer, async (name, entry) =>
            {
                string baseName = name[(name.LastIndexOf('/') + 1)..];
                string parent = name[..Math.Max(name.LastIndexOf('/'), 0)];
                if (baseName == ".wh..wh..opq")
                {
                    opaques.Add(parent.Length == 0 ? "/" : parent);
                    return;
                }
                if (baseName.StartsWith(".wh.", StringComparison.Ordinal))
                {
                    whiteouts.Add(parent + "/" + baseName[4..]);
                    return;
                }
                if (_index.ContainsKey(name) || IsHidden(name))
                {
                    return;
                }
                var e = new Entry(index, entry.EntryType, entry.EntryType is TarEntryType.SymbolicLink or TarEntryType.HardLink ? entry.LinkName : null);
                layerEntries[name] = e;
                if (e.IsRegular && targetsByImagePath.TryGetValue(name, out string? target))
                {
                    await CopyAsync(entry, target, cancellationToken);
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
            await ReadLayerAsync(layer, async (name, entry) =>
            {
                if (wanted.TryGetValue(name, out var targets) && entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile)
                {
                    foreach (string t in targets)
                    {
                        await CopyAsync(entry, t, cancellationToken);
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

    /// <summary>Streams one layer and calls <paramref name="onEntry"/> with each entry's cleaned absolute path; reads to the end so the digest is checked.</summary>
    private async Task ReadLayerAsync(int layer, Func<string, TarEntry, Task> onEntry, CancellationToken cancellationToken)
    {
        ContainerdLayer descriptor = _image.Layers[layer];
        _progress?.Report($"extract: reading layer {layer + 1}/{_image.Layers.Count} ({Common.ByteSize.Format(descriptor.Size)}, {descriptor.Digest[..19]})");
        await using var content = new ContentStream(_client, descriptor.Digest, descriptor.Size);
        await using Stream tar = Decompress(content, descriptor, layer);
        await using (var reader = new TarReader(tar, leaveOpen: true))
        {
            TarEntry? entry;
            while ((entry = await GetNextAsync(reader, layer, cancellationToken)) is not null)
            {
                string name = CleanEntryName(entry.Name, layer);
                if (name == "/")
                {
                    continue;
                }
                await onEntry(name, entry);
            }
        }
        // The tar's end blocks may leave padding unread: drain it so the blob's digest is checked.
        await tar.CopyToAsync(Stream.Null, cancellationToken);
        await content.CopyToAsync(Stream.Null, cancellationToken);
    }

    private async Task<TarEntry?> GetNextAsync(TarReader reader, int layer, CancellationToken cancellationToken)
    {
        try
        {
            return await reader.GetNextEntryAsync(copyData: false, cancellationToken);
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Image '{_image.Name}' layer {layer + 1}: bad tar stream: {e.Message}", e);
        }
    }

    private string CleanEntryName(string name, int layer)
    {
        // Tar names are relative to the layer root; ".." must never climb above it.
        int depth = 0;
        foreach (string part in name.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            depth += part switch { "." => 0, ".." => -1, _ => 1 };
            if (depth < 0)
            {
                throw new VesselException(VesselErrorReason.Corrupt, $"Image '{_image.Name}' layer {layer + 1}: entry '{name}' escapes the root.");
            }
        }
        return ImagePath.Clean(name);
    }

    private Stream Decompress(Stream content, ContainerdLayer layer, int index)
    {
        string mt = layer.MediaType;
        if (mt.EndsWith("+gzip", StringComparison.Ordinal) || mt.EndsWith(".tar.gzip", StringComparison.Ordinal))
        {
            return new GZipStream(content, CompressionMode.Decompress, leaveOpen: true);
        }
        if (mt.EndsWith(".tar", StringComparison.Ordinal) || mt.EndsWith("layer.v1.tar", StringComparison.Ordinal))
        {
            return new NonClosingStream(content);
        }
        throw new VesselException(VesselErrorReason.Unsupported,
            $"Image '{_image.Name}' layer {index + 1} has media type '{mt}': extraction reads only tar and tar+gzip layers (use the snapshot view).");
    }

    private static async Task CopyAsync(TarEntry entry, string target, CancellationToken cancellationToken)
    {
        // The target exists (made by the caller, recorded for cleanup); truncate and fill it.
        await using (var output = new FileStream(target, FileMode.Truncate, FileAccess.Write, FileShare.None))
        {
            if (entry.DataStream is { } data)
            {
                await data.CopyToAsync(output, cancellationToken);
            }
        }
        // Permission bits only: never setuid, setgid or sticky from an image.
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(target, entry.Mode & (UnixFileMode)0x1FF);
        }
    }

    private readonly record struct Entry(int Layer, TarEntryType Type, string? Link)
    {
        public bool IsRegular => Type is TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile;
    }

    /// <summary>Lets the tar reader own a stream without closing the content stream under it.</summary>
    private sealed class NonClosingStream(Stream inner) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => inner.Position;
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => inner.ReadAsync(buffer, offset, count, cancellationToken);

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
