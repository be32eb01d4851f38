using System.Buffers.Binary;
using System.Text;

namespace Vessel.Ext4;

/// <summary>ext4 feature flags Vessel writes (ext4 disk layout, "The Super Block").</summary>
internal static class Ext4Features
{
    public const uint CompatHasJournal = 0x4;
    public const uint CompatExtAttr = 0x8;
    public const uint CompatDirIndex = 0x20;
    public const uint CompatSparseSuper2 = 0x200;
    public const uint IncompatFiletype = 0x2;
    public const uint IncompatExtents = 0x40;
    public const uint IncompatFlexBg = 0x200;
    public const uint RoCompatSparseSuper = 0x1;
    public const uint RoCompatLargeFile = 0x2;
    public const uint RoCompatDirNlink = 0x20;
    public const uint RoCompatExtraIsize = 0x40;
}

/// <summary>The 1024-byte superblock, little-endian (ext4 disk layout, "The Super Block").</summary>
internal sealed class Ext4Superblock
{
    public const int Size = 1024;
    public const ushort Magic = 0xEF53;

    public uint InodesCount;
    public ulong BlocksCount;
    public ulong ReservedBlocksCount;
    public ulong FreeBlocksCount;
    public uint FreeInodesCount;
    public uint InodesPerGroup;
    public uint Timestamp;
    public ushort BlockGroupNumber;
    public uint FeatureCompat;
    public uint FeatureIncompat;
    public uint FeatureRoCompat;
    public Guid Uuid;
    public string Label = string.Empty;
    public byte[] HashSeed = new byte[16];
    public uint JournalInode;
    public uint[] JournalBlocks = new uint[17];
    public byte LogGroupsPerFlex = 4;
    public uint BackupGroup0;
    public uint BackupGroup1;

    public void Write(Span<byte> d)
    {
        d[..Size].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x0..], InodesCount);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x4..], (uint)BlocksCount);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x8..], (uint)ReservedBlocksCount);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0xC..], (uint)FreeBlocksCount);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x10..], FreeInodesCount);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x14..], 0); // s_first_data_block: 0 with 4 KiB blocks
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x18..], 2); // s_log_block_size: 1024 << 2
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x1C..], 2); // s_log_cluster_size
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x20..], Ext4Writer.BlocksPerGroup);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x24..], Ext4Writer.BlocksPerGroup); // clusters per group
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x28..], InodesPerGroup);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x2C..], 0); // s_mtime
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x30..], Timestamp); // s_wtime
        BinaryPrimitives.WriteUInt16LittleEndian(d[0x34..], 0); // s_mnt_count
        BinaryPrimitives.WriteUInt16LittleEndian(d[0x36..], 0xFFFF); // s_max_mnt_count: -1, no forced checks
        BinaryPrimitives.WriteUInt16LittleEndian(d[0x38..], Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(d[0x3A..], 1); // s_state: clean
        BinaryPrimitives.WriteUInt16LittleEndian(d[0x3C..], 1); // s_errors: continue
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x40..], Timestamp); // s_lastcheck
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x48..], 0); // s_creator_os: Linux
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x4C..], 1); // s_rev_level: dynamic
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x54..], Ext4Writer.FirstInode);
        BinaryPrimitives.WriteUInt16LittleEndian(d[0x58..], Ext4Writer.InodeSize);
        BinaryPrimitives.WriteUInt16LittleEndian(d[0x5A..], BlockGroupNumber);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x5C..], FeatureCompat);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x60..], FeatureIncompat);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x64..], FeatureRoCompat);
        Uuid.TryWriteBytes(d[0x68..], bigEndian: true, out _);
        Encoding.UTF8.GetBytes(Label.AsSpan(0, Math.Min(Label.Length, 16)), d[0x78..]);
        BinaryPrimitives.WriteUInt32LittleEndian(d[0xE0..], JournalInode);
        HashSeed.CopyTo(d[0xEC..]);
        d[0xFC] = 1; // s_def_hash_version: half_md4
        d[0xFD] = 1; // s_jnl_backup_type: EXT3_JNL_BACKUP_BLOCKS
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x100..], 0x0C); // s_default_mount_opts: user_xattr, acl
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x108..], Timestamp); // s_mkfs_time
        for (int i = 0; i < 17; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(d[(0x10C + (4 * i))..], JournalBlocks[i]);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x150..], (uint)(BlocksCount >> 32));
        BinaryPrimitives.WriteUInt16LittleEndian(d[0x15C..], 32); // s_min_extra_isize
        BinaryPrimitives.WriteUInt16LittleEndian(d[0x15E..], 32); // s_want_extra_isize
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x160..], 0x2); // s_flags: unsigned directory hash
        d[0x174] = LogGroupsPerFlex;
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x24C..], BackupGroup0); // s_backup_bgs[0]
        BinaryPrimitives.WriteUInt32LittleEndian(d[0x250..], BackupGroup1); // s_backup_bgs[1]
    }
}

/// <summary>A 32-byte block group descriptor (ext4 disk layout, "Block Group Descriptors").</summary>
internal readonly record struct Ext4GroupDescriptor(uint BlockBitmap, uint InodeBitmap, uint InodeTable, ushort FreeBlocks, ushort FreeInodes, ushort UsedDirs)
{
    public const int Size = 32;

    public void Write(Span<byte> d)
    {
        d[..Size].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(d, BlockBitmap);
        BinaryPrimitives.WriteUInt32LittleEndian(d[4..], InodeBitmap);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], InodeTable);
        BinaryPrimitives.WriteUInt16LittleEndian(d[12..], FreeBlocks);
        BinaryPrimitives.WriteUInt16LittleEndian(d[14..], FreeInodes);
        BinaryPrimitives.WriteUInt16LittleEndian(d[16..], UsedDirs);
    }
}

/// <summary>Extent tree nodes (ext4 disk layout, "Extent Tree"): 12-byte header, 12-byte entries.</summary>
internal static class Ext4ExtentTree
{
    public const ushort Magic = 0xF30A;
    public const int EntrySize = 12;
    public const int InodeEntries = 4; // 60 bytes of i_block: header + 4 entries
    public const int BlockEntries = (Ext4Writer.BlockSize - 12) / EntrySize; // 340

    public static void WriteHeader(Span<byte> d, int entries, int max, int depth)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(d, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(d[2..], (ushort)entries);
        BinaryPrimitives.WriteUInt16LittleEndian(d[4..], (ushort)max);
        BinaryPrimitives.WriteUInt16LittleEndian(d[6..], (ushort)depth);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], 0);
    }

    public static void WriteLeaf(Span<byte> d, FsExtent e)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(d, e.Logical);
        BinaryPrimitives.WriteUInt16LittleEndian(d[4..], (ushort)e.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(d[6..], (ushort)(e.Physical >> 32));
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], (uint)e.Physical);
    }

    public static void WriteIndex(Span<byte> d, uint logical, long child)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(d, logical);
        BinaryPrimitives.WriteUInt32LittleEndian(d[4..], (uint)child);
        BinaryPrimitives.WriteUInt16LittleEndian(d[8..], (ushort)(child >> 32));
        BinaryPrimitives.WriteUInt16LittleEndian(d[10..], 0);
    }

    /// <summary>Blocks needed outside the inode for <paramref name="extents"/> extents.</summary>
    public static int TreeBlocks(int extents)
    {
        if (extents <= InodeEntries)
        {
            return 0;
        }
        int leaves = (extents + BlockEntries - 1) / BlockEntries;
        if (leaves <= InodeEntries)
        {
            return leaves;
        }
        int indexes = (leaves + BlockEntries - 1) / BlockEntries;
        if (indexes > InodeEntries)
        {
            throw new VesselException(VesselErrorReason.Unsupported, $"a file with {extents} extents is too fragmented for a two-level extent tree");
        }
        return leaves + indexes;
    }
}

/// <summary>The jbd2 journal superblock, big-endian (kernel include/linux/jbd2.h, journal_superblock_t).</summary>
internal static class JournalSuperblock
{
    public const uint Magic = 0xC03B3998;
    public const uint BlockTypeSuperblockV2 = 4;

    public static void Write(Span<byte> d, uint blockSize, uint maxLength, Guid uuid)
    {
        d[..Ext4Writer.BlockSize].Clear();
        BinaryPrimitives.WriteUInt32BigEndian(d, Magic);
        BinaryPrimitives.WriteUInt32BigEndian(d[4..], BlockTypeSuperblockV2);
        BinaryPrimitives.WriteUInt32BigEndian(d[8..], 0); // h_sequence
        BinaryPrimitives.WriteUInt32BigEndian(d[0xC..], blockSize);
        BinaryPrimitives.WriteUInt32BigEndian(d[0x10..], maxLength);
        BinaryPrimitives.WriteUInt32BigEndian(d[0x14..], 1); // s_first
        BinaryPrimitives.WriteUInt32BigEndian(d[0x18..], 1); // s_sequence
        BinaryPrimitives.WriteUInt32BigEndian(d[0x1C..], 0); // s_start: 0 = clean, nothing to replay
        uuid.TryWriteBytes(d[0x30..], bigEndian: true, out _);
        BinaryPrimitives.WriteUInt32BigEndian(d[0x40..], 1); // s_nr_users
    }

    /// <summary>mke2fs's default journal size in blocks for a filesystem of <paramref name="blocks"/> blocks; 0 for none.</summary>
    public static long DefaultBlocks(long blocks) => blocks switch
    {
        < 2048 => 0,
        < 32768 => 1024,
        < 256 * 1024 => 4096,
        < 512 * 1024 => 8192,
        < 4096 * 1024 => 16384,
        < 8192 * 1024 => 32768,
        < 16384 * 1024 => 65536,
        < 32768 * 1024 => 131072,
        _ => 262144,
    };
}
