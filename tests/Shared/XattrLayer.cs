using System.Buffers.Binary;
using System.Formats.Tar;
using System.Text;

namespace Vessel.Testing;

/// <summary>
/// A layer whose entries carry extended attributes in pax records, the way image builders
/// write them (<c>SCHILY.xattr.NAME</c> for text, <c>LIBARCHIVE.xattr.NAME</c> base64 for
/// bytes): a file with a file capability (<c>cap_net_raw+ep</c>, VFS_CAP_REVISION_2), a
/// <c>user.</c> and a <c>trusted.</c> attribute and an access ACL; a directory with a default
/// ACL; a file whose attributes do not fit in its inode; a symlink with a <c>trusted.</c>
/// attribute. <see cref="Expected"/> is what <c>lgetxattr</c> must return for each path.
/// </summary>
public static class XattrLayer
{
    public const string CapabilityFile = "xattr/ping";
    public const string AclDirectory = "xattr/shared";
    public const string LargeFile = "xattr/large";
    public const string Symlink = "xattr/link";

    /// <summary>security.capability for cap_net_raw (bit 13) permitted and effective.</summary>
    public static readonly byte[] Capability = [0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];

    /// <summary>user::rwx user:1234:r-x group::r-x mask::r-x other::r-x (the same as mode 0755) in posix_acl_xattr form (version 2, ids 0xffffffff for the unnamed entries).</summary>
    public static readonly byte[] Acl = AclBytes((0x01, 7, uint.MaxValue), (0x02, 5, 1234), (0x04, 5, uint.MaxValue), (0x10, 5, uint.MaxValue), (0x20, 5, uint.MaxValue));

    /// <summary>A value too large for the inode's spare space: it goes to the attribute block.</summary>
    public static readonly byte[] Large = Encoding.ASCII.GetBytes(new string('v', 1500));

    /// <summary>Each path's attributes, by name.</summary>
    public static IReadOnlyDictionary<string, IReadOnlyDictionary<string, byte[]>> Expected { get; } = new Dictionary<string, IReadOnlyDictionary<string, byte[]>>
    {
        [CapabilityFile] = new Dictionary<string, byte[]>
        {
            ["security.capability"] = Capability,
            ["user.x"] = "hello"u8.ToArray(),
            ["trusted.t"] = "kept by root"u8.ToArray(),
            ["system.posix_acl_access"] = Acl,
        },
        [AclDirectory] = new Dictionary<string, byte[]>
        {
            ["system.posix_acl_default"] = Acl,
            ["user.dir"] = "on a directory"u8.ToArray(),
        },
        [LargeFile] = new Dictionary<string, byte[]>
        {
            ["user.large"] = Large,
            ["user.small"] = "s"u8.ToArray(),
        },
        [Symlink] = new Dictionary<string, byte[]>
        {
            ["trusted.link"] = "L"u8.ToArray(),
        },
    };

    private static readonly DateTimeOffset Time = new(2024, 1, 2, 3, 4, 5, TimeSpan.Zero);

    /// <summary>The layer (an uncompressed pax tarball, the same bytes on every call: one digest).</summary>
    public static byte[] Tar()
    {
        using var buffer = new MemoryStream();
        using (var tar = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "xattr/") { Mode = (UnixFileMode)0x1ED, ModificationTime = Time });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, AclDirectory + "/", Records(AclDirectory)) { Mode = (UnixFileMode)0x1ED, ModificationTime = Time });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, CapabilityFile, Records(CapabilityFile)) { Mode = (UnixFileMode)0x1ED, ModificationTime = Time, DataStream = new MemoryStream("#!/bin/sh\necho ping\n"u8.ToArray()) });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, LargeFile, Records(LargeFile)) { Mode = (UnixFileMode)0x1A4, ModificationTime = Time, DataStream = new MemoryStream("large\n"u8.ToArray()) });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, Symlink, Records(Symlink)) { LinkName = "ping", Mode = (UnixFileMode)0x1FF, ModificationTime = Time });
        }
        return buffer.ToArray();
    }

    private static Dictionary<string, string> Records(string path) => Expected[path].ToDictionary(
        a => "LIBARCHIVE.xattr." + a.Key,
        a => Convert.ToBase64String(a.Value));

    private static byte[] AclBytes(params (ushort Tag, ushort Perm, uint Id)[] entries)
    {
        byte[] bytes = new byte[4 + (8 * entries.Length)];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, 2);
        for (int i = 0; i < entries.Length; i++)
        {
            Span<byte> e = bytes.AsSpan(4 + (8 * i));
            BinaryPrimitives.WriteUInt16LittleEndian(e, entries[i].Tag);
            BinaryPrimitives.WriteUInt16LittleEndian(e[2..], entries[i].Perm);
            BinaryPrimitives.WriteUInt32LittleEndian(e[4..], entries[i].Id);
        }
        return bytes;
    }
}
