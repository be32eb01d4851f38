using Vessel.Ext4;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// Compares two <see cref="TreeSnapshot"/>s entry by entry: type, permission bits (with
/// setuid/setgid/sticky), owner, size, content hash, symlink target, device numbers,
/// xattrs, mtime to the second, and hard-link identity (which names share an inode, and the
/// link count). Directory sizes, atime and ctime are filesystem details and not compared.
/// </summary>
internal sealed class TreeComparison
{
    /// <summary>Paths that may exist only in the actual tree (lost+found, an /etc made for provisioning files).</summary>
    public HashSet<string> AllowedExtras { get; } = new(StringComparer.Ordinal);

    /// <summary>Paths whose mtime may differ (directories the provisioning files were added to, symlinks a tool cannot time).</summary>
    public HashSet<string> IgnoreMtime { get; } = new(StringComparer.Ordinal);

    /// <summary>Returns one line per difference (empty when the trees match).</summary>
    public List<string> Compare(TreeSnapshot expected, TreeSnapshot actual)
    {
        var differences = new List<string>();
        foreach (var (path, e) in expected.Entries)
        {
            if (!actual.Entries.TryGetValue(path, out TreeEntry? a))
            {
                differences.Add($"{path}: missing (expected {e.Describe()})");
                continue;
            }
            CompareEntry(e, a, differences);
        }
        foreach (var (path, a) in actual.Entries)
        {
            if (!expected.Entries.ContainsKey(path) && !AllowedExtras.Contains(path))
            {
                differences.Add($"{path}: unexpected ({a.Describe()})");
            }
        }
        return differences;
    }

    private void CompareEntry(TreeEntry e, TreeEntry a, List<string> differences)
    {
        string path = e.Path;
        void Differs<T>(string what, T expected, T actual)
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
            {
                differences.Add(string.Create(CultureInfo.InvariantCulture, $"{path}: {what} expected {expected} got {actual}"));
            }
        }

        if (e.Type != a.Type)
        {
            differences.Add($"{path}: type expected {e.Describe()} got {a.Describe()}");
            return;
        }
        Differs("mode", Convert.ToString(e.Permissions, 8), Convert.ToString(a.Permissions, 8));
        Differs("uid", e.Uid, a.Uid);
        Differs("gid", e.Gid, a.Gid);
        if (e.Type != FsKind.Directory)
        {
            Differs("size", e.Size, a.Size);
            Differs("link count", e.LinkCount, a.LinkCount);
            Differs("hard links", string.Join(',', e.HardLinks), string.Join(',', a.HardLinks));
        }
        if (!IgnoreMtime.Contains(path))
        {
            Differs("mtime", e.MtimeSeconds, a.MtimeSeconds);
        }
        Differs("content", e.Digest, a.Digest);
        Differs("symlink target", e.LinkTarget, a.LinkTarget);
        Differs("device", $"{e.DeviceMajor},{e.DeviceMinor}", $"{a.DeviceMajor},{a.DeviceMinor}");
        foreach (var (name, value) in e.Xattrs)
        {
            if (!a.Xattrs.TryGetValue(name, out string? got))
            {
                differences.Add($"{path}: xattr {name} missing");
            }
            else if (got != value)
            {
                differences.Add($"{path}: xattr {name} expected {value} got {got}");
            }
        }
        foreach (string name in a.Xattrs.Keys.Where(n => !e.Xattrs.ContainsKey(n)))
        {
            differences.Add($"{path}: unexpected xattr {name}");
        }
    }
}
