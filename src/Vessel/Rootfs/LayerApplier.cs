using System.Buffers;
using System.Text;
using Vessel.Ext4;
using Vessel.Oci;
using Vessel.Tar;

namespace Vessel.Rootfs;

/// <summary>
/// Applies image layers, in order, to the filesystem being written, with the OCI image
/// spec's rules (layer.md): whiteouts and opaque directories remove what lower layers
/// wrote, a later entry replaces an earlier one (a directory over a directory only
/// updates its metadata), hard links may name files of lower layers. Nothing is ever
/// written to the host: entries exist only in the image. An entry whose path goes through
/// one of the image's symlinks is rejected rather than followed.
/// </summary>
public sealed class LayerApplier
{
    private const int MaxNameBytes = 255; // ext4 directory entries hold 255-byte names
    private const long ProgressInterval = 4 << 20; // not once per entry: 200k small files would post 200k reports

    private readonly Ext4Writer _writer;
    private byte[] _cachedPrefix = []; // the directory part of the last entry's name
    private FsInode? _cachedParent; // what it resolved to; null when nothing is cached

    public LayerApplier(Ext4Writer writer)
    {
        _writer = writer;
    }

    /// <summary>Entries applied so far (all layers).</summary>
    public long Entries { get; private set; }

    /// <summary>Applies one layer's tar stream; <paramref name="layer"/> counts from 1 (0 is provisioning).</summary>
    public async Task ApplyAsync(Stream tar, int layer, string context, Action<long>? progress, CancellationToken cancellationToken)
    {
        using var reader = new TarReader(tar, context);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            TarEntry? entry;
            long reported = 0;
            while ((entry = await reader.NextAsync(cancellationToken)) is not null)
            {
                cancellationToken.ThrowIfCancellationRequested();
                await ApplyEntryAsync(reader, entry, layer, context, buffer, cancellationToken);
                Entries++;
                if (progress is not null && reader.Position - reported >= ProgressInterval)
                {
                    reported = reader.Position;
                    progress(reported);
                }
            }
            await reader.DrainAsync(cancellationToken);
            progress?.Invoke(reader.Position);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task ApplyEntryAsync(TarReader reader, TarEntry entry, int layer, string context, byte[] buffer, CancellationToken cancellationToken)
    {
        string name;
        FsInode? parent = CachedParent(entry, context, out name);
        if (parent is null)
        {
            List<string> parts = SplitPath(entry.NameBytes, context);
            parent = ResolveParentSlow(parts, entry, layer, context);
            if (parent is null)
            {
                return; // the root, or a whiteout: applied
            }
            name = parts[^1];
        }
        await ApplyToParentAsync(reader, entry, layer, context, parent, name, buffer, cancellationToken);
    }

    /// <summary>
    /// The directory of the previous entry, when this entry's name has the same directory part
    /// byte for byte (tar files list a directory's files together): that part was checked and
    /// resolved then, and nothing since removed a name (every unlink forgets the cache).
    /// Null where the slow path must run; <paramref name="name"/> is then unset.
    /// </summary>
    private FsInode? CachedParent(TarEntry entry, string context, out string name)
    {
        name = string.Empty;
        byte[] nameBytes = entry.NameBytes;
        if (_cachedParent is null || nameBytes.Length <= _cachedPrefix.Length
            || nameBytes[_cachedPrefix.Length] != (byte)'/'
            || !nameBytes.AsSpan(0, _cachedPrefix.Length).SequenceEqual(_cachedPrefix))
        {
            return null;
        }
        ReadOnlySpan<byte> last = nameBytes.AsSpan(_cachedPrefix.Length + 1);
        if (last.IsEmpty || last.IndexOf((byte)'/') >= 0 || last.StartsWith("."u8))
        {
            return null; // a trailing slash, deeper, ".", ".." or a whiteout: the slow path decides
        }
        if (last.IndexOf((byte)0) >= 0)
        {
            throw new InvalidDataException($"{context}: entry '{entry.Name}' contains a NUL byte");
        }
        if (last.Length > MaxNameBytes)
        {
            throw new InvalidDataException($"{context}: entry '{entry.Name}' has a component of {last.Length} bytes; ext4 allows at most {MaxNameBytes}");
        }
        name = FsInode.Key(last);
        return _cachedParent;
    }

    private void Unlink(FsInode dir, string name)
    {
        _cachedParent = null; // the cached directory, or one above it, may be the name removed
        _writer.Unlink(dir, name);
    }

    /// <summary>The parent of a split entry name, created as needed; null where the entry was the root or a whiteout, now applied.</summary>
    private FsInode? ResolveParentSlow(List<string> parts, TarEntry entry, int layer, string context)
    {
        if (parts.Count == 0)
        {
            // The root itself ("./"): only its metadata can change.
            if (entry.Type == TarEntryType.Directory)
            {
                SetMetadata(_writer.Root, entry, layer, context);
            }
            return null;
        }

        string name = parts[^1];
        WhiteoutKind whiteout = Whiteout.Classify(name, context, out string target);
        if (whiteout != WhiteoutKind.None)
        {
            FsInode? dir = ResolveParent(parts, create: false, layer, entry, context);
            if (dir is null)
            {
                return null;
            }
            if (whiteout == WhiteoutKind.Opaque)
            {
                MakeOpaque(dir, layer);
            }
            else if (whiteout == WhiteoutKind.Remove)
            {
                Unlink(dir, target);
            }
            return null;
        }

        FsInode parent = ResolveParent(parts, create: true, layer, entry, context)!;
        int slash = Array.LastIndexOf(entry.NameBytes, (byte)'/');
        if (slash > 0 && slash < entry.NameBytes.Length - 1)
        {
            // Only a plain "dir/.../name" is cached: the prefix then names exactly this parent.
            _cachedPrefix = entry.NameBytes.AsSpan(0, slash).ToArray();
            _cachedParent = parent;
        }
        return parent;
    }

    /// <summary>Applies an entry whose parent directory is resolved.</summary>
    private async Task ApplyToParentAsync(
        TarReader reader, TarEntry entry, int layer, string context, FsInode parent, string name, byte[] buffer,
        CancellationToken cancellationToken)
    {
        parent.Children!.TryGetValue(name, out FsInode? existing);

        if (entry.Type == TarEntryType.HardLink)
        {
            FsInode target = ResolveLinkTarget(entry, context);
            if (existing == target)
            {
                return;
            }
            if (existing is not null)
            {
                Unlink(parent, name);
            }
            _writer.Link(parent, name, target);
            target.Layer = layer;
            return;
        }

        FsKind kind = entry.Type switch
        {
            TarEntryType.Directory => FsKind.Directory,
            TarEntryType.SymbolicLink => FsKind.Symlink,
            TarEntryType.CharacterDevice => FsKind.CharacterDevice,
            TarEntryType.BlockDevice => FsKind.BlockDevice,
            TarEntryType.Fifo => FsKind.Fifo,
            _ when entry.IsRegularFile => FsKind.RegularFile,
            _ => throw new InvalidDataException($"{context}: entry '{entry.Name}' has unsupported type '{(char)entry.Type}'"),
        };

        if (existing is not null && existing.Kind == FsKind.Directory && kind == FsKind.Directory)
        {
            SetMetadata(existing, entry, layer, context);
            return;
        }
        if (existing is not null)
        {
            Unlink(parent, name);
        }

        var inode = new FsInode(kind);
        SetMetadata(inode, entry, layer, context);
        switch (kind)
        {
            case FsKind.Symlink:
                if (entry.LinkNameBytes.Length == 0)
                {
                    throw new InvalidDataException($"{context}: symlink '{entry.Name}' has an empty target");
                }
                if (entry.LinkNameBytes.Length >= Ext4Writer.BlockSize)
                {
                    throw new InvalidDataException($"{context}: symlink '{entry.Name}' has a target of {entry.LinkNameBytes.Length} bytes (at most {Ext4Writer.BlockSize - 1})");
                }
                inode.SymlinkTarget = entry.LinkNameBytes;
                inode.Permissions = 0x1FF; // symlink(2) always makes 0777; the header's mode means nothing
                break;
            case FsKind.CharacterDevice:
            case FsKind.BlockDevice:
                if (entry.DeviceMajor is < 0 or > 4095 || entry.DeviceMinor is < 0 or > 0xFFFFF)
                {
                    throw new InvalidDataException($"{context}: device '{entry.Name}' has out-of-range numbers {entry.DeviceMajor}:{entry.DeviceMinor}");
                }
                inode.DeviceMajor = entry.DeviceMajor;
                inode.DeviceMinor = entry.DeviceMinor;
                break;
            case FsKind.RegularFile:
                await WriteDataAsync(reader, entry, inode, buffer, cancellationToken);
                break;
        }
        _writer.Link(parent, name, inode);
    }

    private async Task WriteDataAsync(TarReader reader, TarEntry entry, FsInode inode, byte[] buffer, CancellationToken cancellationToken)
    {
        long maxBlocks;
        if (entry.SparseMap is null)
        {
            maxBlocks = Ext4Writer.CeilDiv(entry.Size, Ext4Writer.BlockSize);
        }
        else
        {
            maxBlocks = 0;
            foreach (var (offset, length) in entry.SparseMap)
            {
                if (length > 0)
                {
                    maxBlocks += ((offset + length - 1) / Ext4Writer.BlockSize) - (offset / Ext4Writer.BlockSize) + 1;
                }
            }
        }
        Ext4Writer.FileData data = _writer.BeginFile(inode, entry.Size, maxBlocks);
        if (entry.SparseMap is null)
        {
            // Straight from the reader's buffer into the image's write chunks: one copy.
            long offset = 0;
            ReadOnlyMemory<byte> chunk;
            while (!(chunk = await reader.ReadDataChunkAsync(cancellationToken)).IsEmpty)
            {
                data.Write(offset, chunk.Span);
                offset += chunk.Length;
            }
        }
        else
        {
            foreach (var (offset, length) in entry.SparseMap)
            {
                long done = 0;
                while (done < length)
                {
                    int want = (int)Math.Min(buffer.Length, length - done);
                    int n = await reader.ReadDataFullAsync(buffer.AsMemory(0, want), cancellationToken);
                    if (n < want)
                    {
                        throw new InvalidDataException($"sparse file '{entry.Name}' ends before its map says");
                    }
                    data.Write(offset + done, buffer.AsSpan(0, n));
                    done += n;
                }
            }
        }
        data.Complete();
    }

    private static void SetMetadata(FsInode inode, TarEntry entry, int layer, string context)
    {
        if (entry.Uid is < 0 or > uint.MaxValue || entry.Gid is < 0 or > uint.MaxValue)
        {
            throw new InvalidDataException($"{context}: entry '{entry.Name}' has an out-of-range owner {entry.Uid}:{entry.Gid}");
        }
        inode.Permissions = entry.Mode & 0xFFF;
        inode.Uid = (uint)entry.Uid;
        inode.Gid = (uint)entry.Gid;
        var mtime = new FsTime(entry.ModificationTime.Seconds, entry.ModificationTime.Nanoseconds);
        inode.ModificationTime = mtime;
        inode.AccessTime = entry.AccessTime is { } a ? new FsTime(a.Seconds, a.Nanoseconds) : mtime;
        inode.ChangeTime = entry.ChangeTime is { } c ? new FsTime(c.Seconds, c.Nanoseconds) : mtime;
        inode.Xattrs = entry.Xattrs;
        inode.Layer = layer;
    }

    /// <summary>Removes everything under <paramref name="dir"/> that this layer did not write (containerd's semantics).</summary>
    private void MakeOpaque(FsInode dir, int layer)
    {
        foreach (var (key, child) in dir.Children!.ToList())
        {
            if (child.Layer != layer)
            {
                Unlink(dir, key);
            }
            else if (child.Kind == FsKind.Directory)
            {
                MakeOpaque(child, layer);
            }
        }
    }

    private FsInode ResolveLinkTarget(TarEntry entry, string context)
    {
        List<string> parts = SplitPath(entry.LinkNameBytes, context, what: "hard link target");
        if (parts.Count == 0)
        {
            throw new InvalidDataException($"{context}: hard link '{entry.Name}' points at the root directory");
        }
        FsInode dir = _writer.Root;
        for (int i = 0; i < parts.Count; i++)
        {
            if (!dir.Children!.TryGetValue(parts[i], out FsInode? next))
            {
                throw new InvalidDataException($"{context}: hard link '{entry.Name}' points at '{entry.LinkName}', which does not exist");
            }
            if (i == parts.Count - 1)
            {
                if (next.Kind == FsKind.Directory)
                {
                    throw new InvalidDataException($"{context}: hard link '{entry.Name}' points at directory '{entry.LinkName}'");
                }
                return next;
            }
            if (next.Kind != FsKind.Directory)
            {
                throw new InvalidDataException($"{context}: hard link '{entry.Name}' points at '{entry.LinkName}', whose parent '{FsInode.Display(parts[i])}' is not a directory (symlinks are not followed)");
            }
            dir = next;
        }
        throw new InvalidOperationException("unreachable");
    }

    private FsInode? ResolveParent(List<string> parts, bool create, int layer, TarEntry entry, string context)
    {
        FsInode dir = _writer.Root;
        for (int i = 0; i < parts.Count - 1; i++)
        {
            if (!dir.Children!.TryGetValue(parts[i], out FsInode? next))
            {
                if (!create)
                {
                    return null;
                }
                // Parents a layer did not list are created like `mkdir -p` would.
                next = new FsInode(FsKind.Directory)
                {
                    Permissions = 0x1ED,
                    ModificationTime = new FsTime(entry.ModificationTime.Seconds, 0),
                    AccessTime = new FsTime(entry.ModificationTime.Seconds, 0),
                    ChangeTime = new FsTime(entry.ModificationTime.Seconds, 0),
                    Layer = layer,
                };
                _writer.Link(dir, parts[i], next);
            }
            else if (next.Kind == FsKind.Symlink)
            {
                string through = string.Join('/', parts.Take(i + 1).Select(FsInode.Display));
                throw new InvalidDataException(
                    $"{context}: entry '{entry.Name}' goes through symlink '{through}' (-> '{Encoding.UTF8.GetString(next.SymlinkTarget!)}'); Vessel never follows an image's symlinks");
            }
            else if (next.Kind != FsKind.Directory)
            {
                if (!create)
                {
                    return null;
                }
                throw new InvalidDataException($"{context}: entry '{entry.Name}' needs '{FsInode.Display(parts[i])}' to be a directory, but an earlier entry made it a file");
            }
            dir = next;
        }
        return dir;
    }

    /// <summary>Splits an entry name into components; rejects absolute names, "..", and over-long components.</summary>
    public static List<string> SplitPath(byte[] nameBytes, string context, string what = "entry")
    {
        string Display() => Encoding.UTF8.GetString(nameBytes);
        if (nameBytes.Length > 0 && nameBytes[0] == (byte)'/')
        {
            throw new InvalidDataException($"{context}: {what} '{Display()}' is an absolute path; layer entries must be relative to the image root");
        }
        if (Array.IndexOf(nameBytes, (byte)0) >= 0)
        {
            throw new InvalidDataException($"{context}: {what} '{Display()}' contains a NUL byte");
        }
        var parts = new List<string>();
        int start = 0;
        for (int i = 0; i <= nameBytes.Length; i++)
        {
            if (i < nameBytes.Length && nameBytes[i] != (byte)'/')
            {
                continue;
            }
            int len = i - start;
            ReadOnlySpan<byte> part = nameBytes.AsSpan(start, len);
            start = i + 1;
            if (len == 0 || part.SequenceEqual("."u8))
            {
                continue;
            }
            if (part.SequenceEqual(".."u8))
            {
                throw new InvalidDataException($"{context}: {what} '{Display()}' contains '..' and would escape the image root");
            }
            if (len > MaxNameBytes)
            {
                throw new InvalidDataException($"{context}: {what} '{Display()}' has a component of {len} bytes; ext4 allows at most {MaxNameBytes}");
            }
            parts.Add(FsInode.Key(part));
        }
        return parts;
    }
}
