using System.Text;

namespace Vessel.Ext4;

/// <summary>File types as ext4 directory entries name them (ext4 disk layout, "Directory Entries").</summary>
public enum FsKind : byte
{
    RegularFile = 1,
    Directory = 2,
    CharacterDevice = 3,
    BlockDevice = 4,
    Fifo = 5,
    Socket = 6,
    Symlink = 7,
}

/// <summary>A timestamp with nanoseconds, as ext4's extra time fields store it.</summary>
public readonly record struct FsTime(long Seconds, int Nanoseconds);

/// <summary>A run of data blocks: <see cref="Length"/> blocks at logical block <see cref="Logical"/> stored at <see cref="Physical"/>.</summary>
public readonly record struct FsExtent(uint Logical, long Physical, int Length);

/// <summary>
/// One inode of the filesystem being written. Several directory entries may share one
/// (hard links). Inode numbers are assigned only when the image is finished.
/// </summary>
public sealed class FsInode
{
    public FsInode(FsKind kind)
    {
        Kind = kind;
        if (kind == FsKind.Directory)
        {
            Children = new Dictionary<string, FsInode>(StringComparer.Ordinal);
        }
    }

    public FsKind Kind { get; }

    /// <summary>Permission and special bits (the low 12 bits of st_mode).</summary>
    public int Permissions { get; set; }

    public uint Uid { get; set; }
    public uint Gid { get; set; }
    public FsTime ModificationTime { get; set; }
    public FsTime AccessTime { get; set; }
    public FsTime ChangeTime { get; set; }

    /// <summary>Logical size in bytes (regular files and symlinks).</summary>
    public long Size { get; set; }

    private List<FsExtent>? _extents;

    /// <summary>The data extents, made on first use (most inodes have none or one).</summary>
    public List<FsExtent> Extents => _extents ??= new List<FsExtent>(1);

    /// <summary>How many extents the inode has, without making the list.</summary>
    public int ExtentCount => _extents?.Count ?? 0;

    /// <summary>Symlink target bytes.</summary>
    public byte[]? SymlinkTarget { get; set; }

    public int DeviceMajor { get; set; }
    public int DeviceMinor { get; set; }

    /// <summary>Extended attributes; replaced as a whole (the tar reader's list is shared, never changed).</summary>
    public IReadOnlyList<KeyValuePair<string, byte[]>> Xattrs { get; set; } = [];

    /// <summary>Directory children keyed by name bytes as a Latin-1 string (a lossless byte view).</summary>
    public Dictionary<string, FsInode>? Children { get; }

    /// <summary>The directory holding this directory (the root is its own parent).</summary>
    public FsInode? Parent { get; set; }

    /// <summary>Number of directory entries naming this inode (directories: 1).</summary>
    public int Names { get; set; }

    /// <summary>The layer that last created or rewrote this entry (for opaque whiteouts).</summary>
    public int Layer { get; set; }

    internal uint Number { get; set; }

    public static string Key(ReadOnlySpan<byte> name) => Encoding.Latin1.GetString(name);

    public static byte[] KeyBytes(string key) => Encoding.Latin1.GetBytes(key);

    public static string Display(string key) => Encoding.UTF8.GetString(Encoding.Latin1.GetBytes(key));
}
