using System.Buffers.Binary;

namespace Vessel.Ext4;

/// <summary>
/// Directory blocks: linear blocks of ext4_dir_entry_2, and hash-tree (htree) directories
/// for anything larger than one block (ext4 disk layout, "Directory Entries", "Hash Tree Directories").
/// </summary>
internal static class Ext4Directory
{
    private const int Bs = Ext4Writer.BlockSize;
    private const int RootLimit = (Bs - 32) / 8; // 508 dx_entries after "." ".." and dx_root_info
    private const int NodeLimit = (Bs - 8) / 8; // 511 dx_entries after the fake dirent

    public readonly record struct Entry(byte[] Name, uint Inode, FsKind Kind);

    public static int RecordLength(int nameLength) => (8 + nameLength + 3) & ~3;

    /// <summary>Builds the blocks of one directory. <paramref name="indexed"/> tells whether it is an htree.</summary>
    public static List<byte[]> Build(uint self, uint parent, List<Entry> entries, ReadOnlySpan<uint> seed, int minBlocks, out bool indexed)
    {
        int linearBytes = 24;
        foreach (Entry e in entries)
        {
            linearBytes += RecordLength(e.Name.Length);
        }
        if (linearBytes <= Bs)
        {
            indexed = false;
            var blocks = new List<byte[]>();
            var dots = new List<Entry> { new("."u8.ToArray(), self, FsKind.Directory), new(".."u8.ToArray(), parent, FsKind.Directory) };
            PackLinear(dots.Concat(entries), blocks);
            while (blocks.Count < minBlocks)
            {
                blocks.Add(EmptyBlock());
            }
            return blocks;
        }

        indexed = true;
        var hashed = new List<(uint Hash, Entry Entry)>(entries.Count);
        foreach (Entry e in entries)
        {
            hashed.Add((Ext4Hash.HalfMd4(e.Name, seed), e));
        }
        hashed.Sort((a, b) =>
        {
            int c = a.Hash.CompareTo(b.Hash);
            return c != 0 ? c : a.Entry.Name.AsSpan().SequenceCompareTo(b.Entry.Name);
        });

        // Leaves: fill each block, remember the first hash of each.
        var leaves = new List<byte[]>();
        var leafHashes = new List<uint>();
        int i = 0;
        while (i < hashed.Count)
        {
            byte[] block = new byte[Bs];
            int pos = 0;
            int lastStart = 0;
            uint firstHash = hashed[i].Hash;
            if (leaves.Count > 0 && hashed[i - 1].Hash == firstHash)
            {
                firstHash |= 1; // a collision run continues from the previous leaf
            }
            while (i < hashed.Count && pos + RecordLength(hashed[i].Entry.Name.Length) <= Bs)
            {
                Entry e = hashed[i].Entry;
                lastStart = pos;
                pos += WriteEntry(block.AsSpan(pos), e, RecordLength(e.Name.Length));
                i++;
            }
            BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(lastStart + 4), (ushort)(Bs - lastStart));
            leaves.Add(block);
            leafHashes.Add(firstHash);
        }

        var result = new List<byte[]>();
        byte[] root = new byte[Bs];
        WriteEntry(root, new Entry("."u8.ToArray(), self, FsKind.Directory), 12);
        WriteEntry(root.AsSpan(12), new Entry(".."u8.ToArray(), parent, FsKind.Directory), Bs - 12);
        result.Add(root);
        if (leaves.Count <= RootLimit)
        {
            WriteRootInfo(root, 0);
            WriteDxEntries(root.AsSpan(32), RootLimit, leafHashes, 1);
            result.AddRange(leaves);
            return result;
        }

        int nodes = (leaves.Count + NodeLimit - 1) / NodeLimit;
        if (nodes > RootLimit)
        {
            throw new VesselException(VesselErrorReason.Unsupported, $"a directory with {entries.Count} entries needs more than two htree levels");
        }
        WriteRootInfo(root, 1);
        var nodeHashes = new List<uint>();
        var nodeBlocks = new List<byte[]>();
        uint firstLeafBlock = (uint)(1 + nodes);
        for (int n = 0; n < nodes; n++)
        {
            int from = n * NodeLimit;
            int count = Math.Min(NodeLimit, leaves.Count - from);
            byte[] node = new byte[Bs];
            BinaryPrimitives.WriteUInt32LittleEndian(node, 0);
            BinaryPrimitives.WriteUInt16LittleEndian(node.AsSpan(4), Bs);
            WriteDxEntries(node.AsSpan(8), NodeLimit, leafHashes.GetRange(from, count), firstLeafBlock + (uint)from);
            nodeBlocks.Add(node);
            nodeHashes.Add(leafHashes[from]);
        }
        WriteDxEntries(root.AsSpan(32), RootLimit, nodeHashes, 1);
        result.AddRange(nodeBlocks);
        result.AddRange(leaves);
        return result;
    }

    private static void WriteRootInfo(byte[] root, byte indirectLevels)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(root.AsSpan(24), 0); // reserved_zero
        root[28] = 1; // hash_version: half_md4 (unsigned per the superblock flag)
        root[29] = 8; // info_length
        root[30] = indirectLevels;
        root[31] = 0;
    }

    private static void WriteDxEntries(Span<byte> d, int limit, List<uint> hashes, uint firstBlock)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(d, (ushort)limit);
        BinaryPrimitives.WriteUInt16LittleEndian(d[2..], (ushort)hashes.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(d[4..], firstBlock);
        for (int k = 1; k < hashes.Count; k++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(d[(k * 8)..], hashes[k]);
            BinaryPrimitives.WriteUInt32LittleEndian(d[((k * 8) + 4)..], firstBlock + (uint)k);
        }
    }

    private static void PackLinear(IEnumerable<Entry> entries, List<byte[]> blocks)
    {
        byte[]? block = null;
        int pos = 0;
        int lastStart = 0;
        foreach (Entry e in entries)
        {
            int len = RecordLength(e.Name.Length);
            if (block is null || pos + len > Bs)
            {
                if (block is not null)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(lastStart + 4), (ushort)(Bs - lastStart));
                }
                block = new byte[Bs];
                blocks.Add(block);
                pos = 0;
            }
            lastStart = pos;
            pos += WriteEntry(block.AsSpan(pos), e, len);
        }
        if (block is not null)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(lastStart + 4), (ushort)(Bs - lastStart));
        }
    }

    private static byte[] EmptyBlock()
    {
        byte[] b = new byte[Bs];
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(4), Bs);
        return b;
    }

    private static int WriteEntry(Span<byte> d, Entry e, int recordLength)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(d, e.Inode);
        BinaryPrimitives.WriteUInt16LittleEndian(d[4..], (ushort)recordLength);
        d[6] = (byte)e.Name.Length;
        d[7] = (byte)e.Kind;
        e.Name.CopyTo(d[8..]);
        return recordLength;
    }
}
