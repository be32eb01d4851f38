using System.Buffers.Binary;
using System.Text;

namespace Vessel.Ext4;

/// <summary>
/// Extended attributes in the inode's spare space or in one external block (ext4 disk
/// layout, "Extended Attributes"). POSIX ACLs are converted from the xattr form that tar
/// carries to ext4's own, shorter form.
/// </summary>
internal static class Ext4Xattrs
{
    public const uint Magic = 0xEA020000;
    public const int InodeRegionOffset = 128 + 32; // after i_extra_isize = 32
    public const int InodeRegionSize = Ext4Writer.InodeSize - InodeRegionOffset;
    private const int BlockHeaderSize = 32;

    public readonly record struct Item(byte Index, byte[] Name, byte[] Value);

    /// <summary>Splits "security.capability" into name index 6 and "capability"; converts ACL values.</summary>
    public static Item Encode(string fullName, byte[] value)
    {
        (string prefix, byte index)[] prefixes =
        [
            ("user.", 1), ("trusted.", 4), ("security.", 6),
        ];
        if (fullName == "system.posix_acl_access")
        {
            return new Item(2, [], ConvertAcl(value, fullName));
        }
        if (fullName == "system.posix_acl_default")
        {
            return new Item(3, [], ConvertAcl(value, fullName));
        }
        foreach (var (prefix, index) in prefixes)
        {
            if (fullName.StartsWith(prefix, StringComparison.Ordinal) && fullName.Length > prefix.Length)
            {
                byte[] name = Encoding.UTF8.GetBytes(fullName[prefix.Length..]);
                if (name.Length > 255)
                {
                    throw new InvalidDataException($"xattr name '{fullName}' is longer than 255 bytes");
                }
                return new Item(index, name, value);
            }
        }
        throw new InvalidDataException($"xattr '{fullName}' is in a namespace ext4 cannot store (user., trusted., security., system.posix_acl_*)");
    }

    private static byte[] ConvertAcl(byte[] xattr, string name)
    {
        // posix_acl_xattr: u32 version 2, then {u16 tag, u16 perm, u32 id}; ext4_acl: u32 version 1,
        // then 4-byte entries for *_OBJ/MASK/OTHER and 8-byte ones for named USER/GROUP.
        if (xattr.Length < 4 || (xattr.Length - 4) % 8 != 0 || BinaryPrimitives.ReadUInt32LittleEndian(xattr) != 2)
        {
            throw new InvalidDataException($"xattr '{name}' is not a valid POSIX ACL");
        }
        using var ms = new MemoryStream();
        Span<byte> buf = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(buf, 1);
        ms.Write(buf[..4]);
        for (int p = 4; p < xattr.Length; p += 8)
        {
            ushort tag = BinaryPrimitives.ReadUInt16LittleEndian(xattr.AsSpan(p));
            ushort perm = BinaryPrimitives.ReadUInt16LittleEndian(xattr.AsSpan(p + 2));
            uint id = BinaryPrimitives.ReadUInt32LittleEndian(xattr.AsSpan(p + 4));
            BinaryPrimitives.WriteUInt16LittleEndian(buf, tag);
            BinaryPrimitives.WriteUInt16LittleEndian(buf[2..], perm);
            if (tag is 0x02 or 0x08)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(buf[4..], id);
                ms.Write(buf);
            }
            else
            {
                ms.Write(buf[..4]);
            }
        }
        return ms.ToArray();
    }

    private static int EntrySize(Item item) => (16 + item.Name.Length + 3) & ~3;

    private static int ValueSize(Item item) => (item.Value.Length + 3) & ~3;

    public static bool FitsInInode(IReadOnlyList<Item> items)
    {
        int need = 4 + 4; // magic + terminator
        foreach (Item i in items)
        {
            need += EntrySize(i) + ValueSize(i);
        }
        return need <= InodeRegionSize;
    }

    /// <summary>Writes the in-inode region (from offset 160 of the inode).</summary>
    public static void WriteInInode(Span<byte> region, IReadOnlyList<Item> items)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(region, Magic);
        // Value offsets count from the first entry, just after the magic.
        Span<byte> entries = region[4..];
        WriteEntries(entries, entries.Length, items, out _);
    }

    public static byte[] BuildBlock(IReadOnlyList<Item> items, Func<string> path)
    {
        int need = BlockHeaderSize + 4;
        foreach (Item i in items)
        {
            need += EntrySize(i) + ValueSize(i);
        }
        if (need > Ext4Writer.BlockSize)
        {
            throw new InvalidDataException($"extended attributes of '{path()}' need {need} bytes; ext4 holds at most {Ext4Writer.BlockSize} per file");
        }
        var sorted = items.OrderBy(i => i.Index).ThenBy(i => i.Name.Length).ThenBy(i => Encoding.Latin1.GetString(i.Name), StringComparer.Ordinal).ToList();
        byte[] block = new byte[Ext4Writer.BlockSize];
        BinaryPrimitives.WriteUInt32LittleEndian(block, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(4), 1); // h_refcount
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(8), 1); // h_blocks
        // Block entries' value offsets count from the block start.
        WriteEntries(block, block.Length, sorted, out List<uint> hashes, entriesStart: BlockHeaderSize);
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(12), Ext4Hash.XattrBlock(hashes));
        return block;
    }

    private static void WriteEntries(Span<byte> area, int areaLength, IReadOnlyList<Item> items, out List<uint> hashes, int entriesStart = 0)
    {
        hashes = [];
        int pos = entriesStart;
        int valueTop = areaLength;
        foreach (Item item in items)
        {
            int vsize = ValueSize(item);
            valueTop -= vsize;
            item.Value.CopyTo(area[valueTop..]);
            area[pos] = (byte)item.Name.Length;
            area[pos + 1] = item.Index;
            BinaryPrimitives.WriteUInt16LittleEndian(area[(pos + 2)..], (ushort)(item.Value.Length == 0 ? 0 : valueTop));
            BinaryPrimitives.WriteUInt32LittleEndian(area[(pos + 4)..], 0); // e_value_inum
            BinaryPrimitives.WriteUInt32LittleEndian(area[(pos + 8)..], (uint)item.Value.Length);
            uint hash = Ext4Hash.XattrEntry(item.Name, item.Value);
            hashes.Add(hash);
            BinaryPrimitives.WriteUInt32LittleEndian(area[(pos + 12)..], hash);
            item.Name.CopyTo(area[(pos + 16)..]);
            pos += EntrySize(item);
        }
        // The four zero bytes after the last entry end the list (the area starts zeroed).
    }
}
