using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Vessel.Ext4;

/// <summary>
/// Reads the extended attributes of an inode of an ext4 image (ext4 disk layout: "The Super
/// Block", "Block Group Descriptors", "Inode Table", "Extended Attributes"): the entries in the
/// inode's spare space after <c>i_extra_isize</c>, then those of its one external block
/// (<c>i_file_acl</c>). Names come back with their namespace prefix (<c>user.</c>,
/// <c>trusted.</c>, <c>security.</c>, <c>system.posix_acl_*</c>) and POSIX ACLs in the xattr
/// form that <c>lsetxattr(2)</c> takes, the reverse of <see cref="Ext4Xattrs"/>. Attributes in
/// namespaces the kernel does not show (<c>system.data</c> of inline data, rich ACLs) are left
/// out. Every offset is checked against the structure it lies in, so a damaged image gives an
/// <see cref="InvalidDataException"/> naming the inode, never a read outside it. Values kept in
/// their own inodes (<c>ea_inode</c>) are refused: <see cref="Ext4Writer"/> never writes them.
/// </summary>
internal sealed class Ext4XattrReader : IDisposable
{
    private const uint IncompatMetaBg = 0x10;
    private const uint Incompat64Bit = 0x80;
    private const int GoodOldInodeSize = 128;
    private const int BlockHeaderSize = 32;
    private const int EntryHeaderSize = 16;
    private const uint AclVersionExt4 = 1;
    private const uint AclVersionXattr = 2;
    private const uint AclUndefinedId = uint.MaxValue;

    private readonly SafeFileHandle _image;
    private readonly string _path;
    private readonly int _blockSize;
    private readonly int _inodeSize;
    private readonly uint _inodesPerGroup;
    private readonly uint _inodesCount;
    private readonly long _imageLength;
    private readonly long[] _inodeTables;

    private Ext4XattrReader(SafeFileHandle image, string path)
    {
        _image = image;
        _path = path;
        _imageLength = RandomAccess.GetLength(image);
        byte[] sb = ReadExactly(1024, Ext4Superblock.Size, "the superblock");
        if (BinaryPrimitives.ReadUInt16LittleEndian(sb.AsSpan(0x38)) != Ext4Superblock.Magic)
        {
            throw Corrupt("it has no ext4 superblock magic");
        }
        uint logBlockSize = BinaryPrimitives.ReadUInt32LittleEndian(sb.AsSpan(0x18));
        _inodesCount = BinaryPrimitives.ReadUInt32LittleEndian(sb.AsSpan(0x0));
        _inodesPerGroup = BinaryPrimitives.ReadUInt32LittleEndian(sb.AsSpan(0x28));
        bool dynamic = BinaryPrimitives.ReadUInt32LittleEndian(sb.AsSpan(0x4C)) >= 1;
        _inodeSize = dynamic ? BinaryPrimitives.ReadUInt16LittleEndian(sb.AsSpan(0x58)) : GoodOldInodeSize;
        uint incompat = BinaryPrimitives.ReadUInt32LittleEndian(sb.AsSpan(0x60));
        if (logBlockSize > 6 || _inodesPerGroup == 0 || _inodeSize < GoodOldInodeSize || (_inodeSize & (_inodeSize - 1)) != 0)
        {
            throw Corrupt($"its superblock is not sane (log block size {logBlockSize}, {_inodesPerGroup} inodes per group, inode size {_inodeSize})");
        }
        if ((incompat & IncompatMetaBg) != 0)
        {
            throw Corrupt("it uses meta_bg, which this reader does not support");
        }
        _blockSize = 1024 << (int)logBlockSize;
        int descSize = (incompat & Incompat64Bit) != 0 ? BinaryPrimitives.ReadUInt16LittleEndian(sb.AsSpan(0xFE)) : 32;
        if (descSize < 32 || descSize > 1024)
        {
            throw Corrupt($"its group descriptors are {descSize} bytes");
        }
        long groups = (_inodesCount + (long)_inodesPerGroup - 1) / _inodesPerGroup;
        long firstDataBlock = BinaryPrimitives.ReadUInt32LittleEndian(sb.AsSpan(0x14));
        byte[] descriptors = ReadExactly((firstDataBlock + 1) * _blockSize, checked((int)(groups * descSize)), "the group descriptors");
        _inodeTables = new long[groups];
        for (int g = 0; g < groups; g++)
        {
            ReadOnlySpan<byte> d = descriptors.AsSpan(g * descSize, descSize);
            long table = BinaryPrimitives.ReadUInt32LittleEndian(d[0x8..]);
            if (descSize >= 64)
            {
                table |= (long)BinaryPrimitives.ReadUInt32LittleEndian(d[0x28..]) << 32;
            }
            _inodeTables[g] = table;
        }
    }

    public static Ext4XattrReader Open(string image)
    {
        SafeFileHandle handle = File.OpenHandle(image, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            return new Ext4XattrReader(handle, image);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>The attributes of <paramref name="inode"/>, in-inode ones first, each in the order the image stores it.</summary>
    public IReadOnlyList<KeyValuePair<string, byte[]>> Read(uint inode)
    {
        if (inode == 0 || inode > _inodesCount)
        {
            throw Corrupt($"inode {inode} is outside its 1..{_inodesCount} inodes");
        }
        long group = (inode - 1) / _inodesPerGroup;
        long at = _inodeTables[group] * _blockSize + (long)((inode - 1) % _inodesPerGroup) * _inodeSize;
        byte[] raw = ReadExactly(at, _inodeSize, $"inode {inode}");
        var result = new List<KeyValuePair<string, byte[]>>();
        if (_inodeSize > GoodOldInodeSize)
        {
            int extra = BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(0x80));
            int region = GoodOldInodeSize + extra;
            if (region > _inodeSize)
            {
                throw Corrupt($"inode {inode} has i_extra_isize {extra}, past its {_inodeSize} bytes");
            }
            if (extra % 4 == 0 && region + 4 <= _inodeSize && BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(region)) == Ext4Xattrs.Magic)
            {
                // In-inode value offsets count from the first entry, just after the magic.
                ReadEntries(raw.AsSpan(region + 4), 0, inode, "its in-inode attributes", result);
            }
        }
        long block = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(0x68)) | ((long)BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(0x76)) << 32);
        if (block != 0)
        {
            byte[] data = ReadExactly(block * _blockSize, _blockSize, $"the attribute block of inode {inode}");
            if (BinaryPrimitives.ReadUInt32LittleEndian(data) != Ext4Xattrs.Magic || BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(8)) != 1)
            {
                throw Corrupt($"the attribute block {block} of inode {inode} has no attribute header");
            }
            // Block value offsets count from the block start.
            ReadEntries(data, BlockHeaderSize, inode, $"its attribute block {block}", result);
        }
        return result;
    }

    public void Dispose() => _image.Dispose();

    private void ReadEntries(ReadOnlySpan<byte> area, int first, uint inode, string where, List<KeyValuePair<string, byte[]>> result)
    {
        int pos = first;
        while (true)
        {
            if (pos + 4 > area.Length)
            {
                throw Corrupt($"the attribute list of inode {inode} ({where}) has no end");
            }
            if (BinaryPrimitives.ReadUInt32LittleEndian(area[pos..]) == 0)
            {
                return;
            }
            if (pos + EntryHeaderSize > area.Length)
            {
                throw Corrupt($"an attribute entry of inode {inode} ({where}) runs past its end");
            }
            int nameLength = area[pos];
            byte index = area[pos + 1];
            int valueOffset = BinaryPrimitives.ReadUInt16LittleEndian(area[(pos + 2)..]);
            uint valueInode = BinaryPrimitives.ReadUInt32LittleEndian(area[(pos + 4)..]);
            uint valueSize = BinaryPrimitives.ReadUInt32LittleEndian(area[(pos + 8)..]);
            int next = (pos + EntryHeaderSize + nameLength + 3) & ~3;
            if (pos + EntryHeaderSize + nameLength > area.Length || valueSize > area.Length || valueOffset + (long)valueSize > area.Length)
            {
                throw Corrupt($"an attribute entry of inode {inode} ({where}) points past its end");
            }
            if (valueInode != 0)
            {
                throw Corrupt($"inode {inode} keeps an attribute value in inode {valueInode} (ea_inode), which this reader does not support");
            }
            string? name = FullName(index, area.Slice(pos + EntryHeaderSize, nameLength));
            if (name is not null)
            {
                byte[] value = area.Slice(valueOffset, (int)valueSize).ToArray();
                result.Add(new(name, index is 2 or 3 ? AclToXattr(value, inode, name) : value));
            }
            pos = next;
        }
    }

    /// <summary>The name with its prefix, or null for a namespace that the kernel never lists.</summary>
    private static string? FullName(byte index, ReadOnlySpan<byte> suffix)
    {
        string rest = Encoding.UTF8.GetString(suffix);
        return index switch
        {
            1 => "user." + rest,
            2 => "system.posix_acl_access",
            3 => "system.posix_acl_default",
            4 => "trusted." + rest,
            6 => "security." + rest,
            _ => null,
        };
    }

    /// <summary>ext4's ACL (u32 version 1; 4-byte entries for the *_OBJ, MASK and OTHER tags, 8-byte ones with an id for USER and GROUP) as posix_acl_xattr (u32 version 2; every entry {u16 tag, u16 perm, u32 id}).</summary>
    private byte[] AclToXattr(byte[] disk, uint inode, string name)
    {
        if (disk.Length < 4 || BinaryPrimitives.ReadUInt32LittleEndian(disk) != AclVersionExt4)
        {
            throw Corrupt($"the {name} of inode {inode} is not an ext4 ACL");
        }
        using var xattr = new MemoryStream();
        Span<byte> entry = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(entry, AclVersionXattr);
        xattr.Write(entry[..4]);
        for (int p = 4; p < disk.Length;)
        {
            if (p + 4 > disk.Length)
            {
                throw Corrupt($"the {name} of inode {inode} ends inside an entry");
            }
            ushort tag = BinaryPrimitives.ReadUInt16LittleEndian(disk.AsSpan(p));
            bool named = tag is 0x02 or 0x08;
            if (named && p + 8 > disk.Length)
            {
                throw Corrupt($"the {name} of inode {inode} ends inside an entry");
            }
            BinaryPrimitives.WriteUInt16LittleEndian(entry, tag);
            BinaryPrimitives.WriteUInt16LittleEndian(entry[2..], BinaryPrimitives.ReadUInt16LittleEndian(disk.AsSpan(p + 2)));
            BinaryPrimitives.WriteUInt32LittleEndian(entry[4..], named ? BinaryPrimitives.ReadUInt32LittleEndian(disk.AsSpan(p + 4)) : AclUndefinedId);
            xattr.Write(entry);
            p += named ? 8 : 4;
        }
        return xattr.ToArray();
    }

    private byte[] ReadExactly(long offset, int length, string what)
    {
        if (offset < 0 || offset + length > _imageLength)
        {
            throw Corrupt($"{what} at byte {offset} lies past its end ({_imageLength} bytes)");
        }
        byte[] buffer = new byte[length];
        int done = 0;
        while (done < length)
        {
            int n = RandomAccess.Read(_image, buffer.AsSpan(done), offset + done);
            if (n == 0)
            {
                throw Corrupt($"{what} at byte {offset} is cut short");
            }
            done += n;
        }
        return buffer;
    }

    private InvalidDataException Corrupt(string what) => new($"ext4 image {_path}: {what}.");
}
