using Vessel.Ext4;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// One filesystem entry as the read-back check compares it. Paths are absolute inside the
/// tree ("/etc/passwd", the root is "/"). <see cref="Inode"/> is only used to group hard
/// links: the comparison looks at <see cref="HardLinks"/> (the other names of the same inode).
/// </summary>
internal sealed record TreeEntry
{
    public required string Path { get; init; }
    public required FsKind Type { get; init; }
    public required uint Permissions { get; init; }
    public required uint Uid { get; init; }
    public required uint Gid { get; init; }
    public required long Size { get; init; }
    public required long MtimeSeconds { get; init; }
    public required ulong Inode { get; init; }
    public required ulong LinkCount { get; init; }
    public long AllocatedBytes { get; init; }
    /// <summary>The <see cref="ContentDigest"/> of a regular file.</summary>
    public string? Digest { get; init; }
    public string? LinkTarget { get; init; }
    public uint DeviceMajor { get; init; }
    public uint DeviceMinor { get; init; }
    public IReadOnlyDictionary<string, string> Xattrs { get; init; } = new SortedDictionary<string, string>(StringComparer.Ordinal);

    /// <summary>The other paths that name the same inode, sorted; empty when it has one name.</summary>
    public IReadOnlyList<string> HardLinks { get; init; } = [];

    public string Describe()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{Type} {Convert.ToString(Permissions, 8).PadLeft(4, '0')} {Uid}:{Gid}");
        switch (Type)
        {
            case FsKind.RegularFile:
                sb.Append(CultureInfo.InvariantCulture, $" size={Size} digest={Digest?[..12]}");
                break;
            case FsKind.Symlink:
                sb.Append(CultureInfo.InvariantCulture, $" -> {LinkTarget}");
                break;
            case FsKind.CharacterDevice or FsKind.BlockDevice:
                sb.Append(CultureInfo.InvariantCulture, $" {DeviceMajor},{DeviceMinor}");
                break;
        }
        sb.Append(CultureInfo.InvariantCulture, $" mtime={MtimeSeconds}");
        if (Xattrs.Count > 0)
        {
            sb.Append(" xattrs=").AppendJoin(',', Xattrs.Keys);
        }
        if (HardLinks.Count > 0)
        {
            sb.Append(" links=").AppendJoin(',', HardLinks);
        }
        return sb.ToString();
    }
}

/// <summary>Every entry of a directory tree, walked without following symlinks.</summary>
internal sealed class TreeSnapshot
{
    private TreeSnapshot(string root, SortedDictionary<string, TreeEntry> entries)
    {
        Root = root;
        Entries = entries;
    }

    /// <summary>The host directory this snapshot was taken from.</summary>
    public string Root { get; }

    public SortedDictionary<string, TreeEntry> Entries { get; }

    public TreeEntry this[string path] => Entries.TryGetValue(path, out TreeEntry? e)
        ? e
        : throw new KeyNotFoundException($"{path} is not in the tree at {Root}");

    /// <summary>A copy without the entries for which <paramref name="drop"/> is true (hard-link groups unchanged).</summary>
    public TreeSnapshot Without(Func<string, bool> drop)
    {
        var kept = new SortedDictionary<string, TreeEntry>(StringComparer.Ordinal);
        foreach (var (path, entry) in Entries)
        {
            if (!drop(path))
            {
                kept[path] = entry;
            }
        }
        return new TreeSnapshot(Root, kept);
    }

    /// <summary>
    /// Walks <paramref name="root"/> with lstat/readlink/llistxattr, hashing regular files.
    /// Entries for which <paramref name="skip"/> returns true are left out together with
    /// everything below them (used for the provisioning files and lost+found).
    /// </summary>
    public static TreeSnapshot Take(string root, Func<string, bool>? skip = null, CancellationToken cancellationToken = default)
    {
        var entries = new SortedDictionary<string, TreeEntry>(StringComparer.Ordinal);
        var pending = new Stack<string>();
        pending.Push("/");
        while (pending.Count > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            string path = pending.Pop();
            string host = path == "/" ? root : root + path;
            TreeEntry entry = ReadEntry(path, host);
            entries[path] = entry;
            if (entry.Type == FsKind.Directory)
            {
                foreach (string child in Directory.EnumerateFileSystemEntries(host))
                {
                    string name = System.IO.Path.GetFileName(child);
                    string childPath = path == "/" ? "/" + name : path + "/" + name;
                    if (skip is null || !skip(childPath))
                    {
                        pending.Push(childPath);
                    }
                }
            }
        }

        // Content digests in parallel: reading many small files through a loop device is
        // latency-bound, not CPU-bound.
        string[] files = entries.Values.Where(e => e.Type == FsKind.RegularFile).Select(e => e.Path).ToArray();
        var digests = new string[files.Length];
        Parallel.For(
            0,
            files.Length,
            new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = cancellationToken },
            i => digests[i] = ContentDigest.OfFile(files[i] == "/" ? root : root + files[i]));
        for (int i = 0; i < files.Length; i++)
        {
            entries[files[i]] = entries[files[i]] with { Digest = digests[i] };
        }
        GroupHardLinks(entries);
        return new TreeSnapshot(root, entries);
    }

    /// <summary>A snapshot of entries that were described rather than walked (a generated image's expectation).</summary>
    public static TreeSnapshot FromEntries(string description, IEnumerable<TreeEntry> entries)
    {
        var map = new SortedDictionary<string, TreeEntry>(StringComparer.Ordinal);
        foreach (TreeEntry e in entries)
        {
            map.Add(e.Path, e);
        }
        GroupHardLinks(map);
        return new TreeSnapshot(description, map);
    }

    /// <summary>Hard-link identity: the names that share an inode (directories cannot).</summary>
    private static void GroupHardLinks(SortedDictionary<string, TreeEntry> entries)
    {
        var groups = entries.Values
            .Where(e => e.Type != FsKind.Directory)
            .GroupBy(e => e.Inode)
            .Where(g => g.Count() > 1)
            .ToList();
        foreach (var group in groups)
        {
            string[] names = group.Select(e => e.Path).Order(StringComparer.Ordinal).ToArray();
            foreach (string name in names)
            {
                entries[name] = entries[name] with { HardLinks = names.Where(n => n != name).ToArray() };
            }
        }
    }

    private static TreeEntry ReadEntry(string path, string host)
    {
        StatInfo st = Native.LStat(host);
        FsKind type = st.Kind ?? throw new InvalidDataException($"{host}: unknown file type 0x{st.Mode & 0xF000:x}");
        var xattrs = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in Native.ListXattrs(host))
        {
            xattrs[name] = Convert.ToHexStringLower(value);
        }
        return new TreeEntry
        {
            Path = path,
            Type = type,
            Permissions = st.Permissions,
            Uid = st.Uid,
            Gid = st.Gid,
            Size = type is FsKind.RegularFile or FsKind.Symlink ? st.Size : 0,
            MtimeSeconds = st.MtimeSeconds,
            Inode = st.Inode,
            LinkCount = st.LinkCount,
            AllocatedBytes = st.Blocks * 512,
            Digest = null, // filled in by Take, in parallel
            LinkTarget = type == FsKind.Symlink ? ReadLink(host) : null,
            DeviceMajor = type is FsKind.CharacterDevice or FsKind.BlockDevice ? st.Major : 0,
            DeviceMinor = type is FsKind.CharacterDevice or FsKind.BlockDevice ? st.Minor : 0,
            Xattrs = xattrs,
        };
    }

    private static string ReadLink(string host)
    {
        // FileSystemInfo.LinkTarget is readlink(2) verbatim: no resolution, no normalization.
        return new FileInfo(host).LinkTarget ?? throw new IOException($"readlink {host} returned nothing");
    }
}
