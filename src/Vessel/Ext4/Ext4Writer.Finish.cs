using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Vessel.Ext4;

public sealed partial class Ext4Writer
{
    private const int GroupDescriptorSize = Ext4GroupDescriptor.Size;
    private const uint RootInode = 2;
    private const uint JournalInode = 8;
    private const uint LostAndFoundInode = 11;
    private const int LostAndFoundBlocks = 4; // room for e2fsck to reconnect orphans without allocating

    [System.Runtime.CompilerServices.InlineArray(60)]
    private struct IBlockBytes
    {
        private byte _first;
    }

    /// <summary>Per-inode layout decided at finish.</summary>
    private sealed class InodePlan
    {
        public required FsInode Inode;
        public List<byte[]>? DirectoryBlocks;
        public string[]? SortedKeys; // a directory's entries in name order, sorted once for numbering and the directory blocks
        public FsInode[]? SortedChildren;
        public bool Indexed;
        public List<Ext4Xattrs.Item>? Xattrs;
        public bool XattrsInInode;
        public long XattrBlock;
        public byte[]? XattrBlockData;
        public int TreeBlocks;
        public IBlockBytes IBlock; // i_block: inline, not an array per inode
        public int SubdirCount;
    }

    private static readonly ParallelOptions s_finishParallelism = new() { MaxDegreeOfParallelism = Environment.ProcessorCount };

    /// <summary>Writes directories, inodes, bitmaps, the journal and the superblocks; the image is complete afterwards.</summary>
    public Ext4Summary Finish()
    {
        ThrowIfFaulted();
        try
        {
            Ext4Summary summary = FinishCore();
            _finished = true;
            return summary;
        }
        catch (Exception e)
        {
            Fault(e);
            throw;
        }
    }

    /// <summary>The steps of <see cref="Finish"/>, in order; each names what it decides or writes.</summary>
    private Ext4Summary FinishCore()
    {
        var now = new FsTime(_options.Timestamp.ToUnixTimeSeconds(), 0);
        FsInode lostFound = EnsureLostAndFound(now);
        Dictionary<FsInode, InodePlan> dirPlans = SortDirectories();
        InodeNumbering numbering = NumberInodes(dirPlans, lostFound);
        long fixedMeta = PlanContents(dirPlans, numbering.Plans, HashSeedWords());
        Layout layout = ChooseLayout(fixedMeta, numbering.HighestInode);
        long totalBlocks = layout.TotalBlocks;

        byte[] bitmap = MarkLiveDataAndClearTheRest(layout, numbering.Plans);
        MetadataPlacement placement = PlaceMetadata(layout, bitmap);
        WriteContentBlocks(numbering.Plans, bitmap);
        InodePlan journalPlan = WriteJournal(layout, placement, bitmap, now);
        GroupUsage usage = WriteInodeTables(layout, placement, numbering, journalPlan);
        (byte[] gdt, long freeBlocks) = WriteBitmapsAndDescriptors(layout, placement, bitmap, usage);
        WriteSuperblocks(layout, gdt, freeBlocks, numbering.HighestInode, journalPlan, now);

        _image.SetLength(totalBlocks * BlockSize);
        _image.FlushToDisk();
        uint ipg = layout.InodesPerGroup;
        int groups = layout.Groups;
        return new Ext4Summary(totalBlocks * BlockSize, totalBlocks, freeBlocks, ipg * (long)groups, (ipg * (long)groups) - numbering.HighestInode,
            numbering.Files, numbering.Directories, DataBytes, _image.BytesWritten);
    }

    /// <summary>Inodes in the order they are numbered, indexed by number, with counts for the summary.</summary>
    private sealed record InodeNumbering(List<InodePlan> Plans, InodePlan?[] ByNumber, uint HighestInode, long Files, long Directories);

    /// <summary>Where the group metadata and the journal lie (first block of each run).</summary>
    private sealed record MetadataPlacement(long InodeTables, long BlockBitmaps, long InodeBitmaps, long Journal, List<FsExtent> JournalExtents);

    /// <summary>Inodes and directories in use per block group.</summary>
    private sealed record GroupUsage(int[] UsedInodes, int[] UsedDirectories);

    /// <summary>lost+found: e2fsck expects it; keep the image's own if it has one.</summary>
    private FsInode EnsureLostAndFound(FsTime now)
    {
        string lfKey = FsInode.Key("lost+found"u8);
        if (!Root.Children!.TryGetValue(lfKey, out FsInode? lostFound) || lostFound.Kind != FsKind.Directory)
        {
            if (lostFound is not null)
            {
                Unlink(Root, lfKey);
            }
            lostFound = new FsInode(FsKind.Directory) { Permissions = 0x1C0, ModificationTime = now, AccessTime = now, ChangeTime = now };
            Link(Root, lfKey, lostFound);
        }
        return lostFound;
    }

    /// <summary>Every directory's children in name order, sorted on all cores (the parser's core is free by now).</summary>
    private Dictionary<FsInode, InodePlan> SortDirectories()
    {
        var dirPlans = new Dictionary<FsInode, InodePlan>(ReferenceEqualityComparer.Instance);
        var pending = new Stack<FsInode>();
        pending.Push(Root);
        while (pending.Count > 0)
        {
            FsInode dir = pending.Pop();
            dirPlans[dir] = new InodePlan { Inode = dir };
            foreach (FsInode child in dir.Children!.Values)
            {
                if (child.Kind == FsKind.Directory)
                {
                    pending.Push(child);
                }
            }
        }
        Parallel.ForEach(dirPlans.Values, s_finishParallelism, plan =>
        {
            Dictionary<string, FsInode> entries = plan.Inode.Children!;
            string[] keys = new string[entries.Count];
            FsInode[] children = new FsInode[entries.Count];
            entries.Keys.CopyTo(keys, 0);
            entries.Values.CopyTo(children, 0);
            Array.Sort(keys, children, StringComparer.Ordinal);
            plan.SortedKeys = keys;
            plan.SortedChildren = children;
        });
        return dirPlans;
    }

    /// <summary>Numbers inodes breadth-first in name order, so that a directory's inodes sit together.</summary>
    private InodeNumbering NumberInodes(Dictionary<FsInode, InodePlan> dirPlans, FsInode lostFound)
    {
        var plans = new List<InodePlan>();
        Root.Number = RootInode;
        lostFound.Number = LostAndFoundInode;
        uint next = LostAndFoundInode + 1;
        var queue = new Queue<FsInode>();
        queue.Enqueue(Root);
        long files = 0;
        long directories = 0;
        while (queue.Count > 0)
        {
            FsInode dir = queue.Dequeue();
            InodePlan plan = dirPlans[dir];
            plans.Add(plan);
            directories++;
            foreach (FsInode child in plan.SortedChildren!)
            {
                if (child.Number == 0)
                {
                    if (next == uint.MaxValue)
                    {
                        throw new VesselException(VesselErrorReason.Unsupported, "more than 2^32 inodes");
                    }
                    child.Number = next++;
                    if (child.Kind != FsKind.Directory)
                    {
                        var p = new InodePlan { Inode = child };
                        plans.Add(p);
                        files++;
                    }
                }
                if (child.Kind == FsKind.Directory)
                {
                    plan.SubdirCount++;
                    queue.Enqueue(child);
                }
            }
        }
        uint highestInode = next - 1;
        var byNumber = new InodePlan?[highestInode + 1];
        foreach (InodePlan plan in plans)
        {
            byNumber[plan.Inode.Number] = plan;
        }
        return new InodeNumbering(plans, byNumber, highestInode, files, directories);
    }

    /// <summary>
    /// Builds directory blocks (on all cores) and extended attribute lists, and counts the
    /// metadata blocks that do not depend on the layout: directories, xattr blocks, long
    /// symlinks, extent tree blocks, the root's first block and the reserved GDT blocks.
    /// </summary>
    private long PlanContents(Dictionary<FsInode, InodePlan> dirPlans, List<InodePlan> plans, uint[] seed)
    {
        Parallel.ForEach(dirPlans.Values, s_finishParallelism, plan =>
        {
            FsInode inode = plan.Inode;
            string[] keys = plan.SortedKeys!;
            FsInode[] children = plan.SortedChildren!;
            var entries = new List<Ext4Directory.Entry>(keys.Length);
            for (int i = 0; i < keys.Length; i++)
            {
                entries.Add(new Ext4Directory.Entry(FsInode.KeyBytes(keys[i]), children[i].Number, children[i].Kind));
            }
            plan.DirectoryBlocks = Ext4Directory.Build(inode.Number, inode.Parent!.Number, entries, seed,
                inode.Number == LostAndFoundInode ? LostAndFoundBlocks : 1, out plan.Indexed);
            plan.TreeBlocks = Ext4ExtentTree.TreeBlocks((int)CeilDiv(plan.DirectoryBlocks.Count, MaxExtentLength));
        });
        long directoryBlocks = 0;
        long xattrBlocks = 0;
        long symlinkBlocks = 0;
        foreach (InodePlan plan in plans)
        {
            FsInode inode = plan.Inode;
            if (inode.Kind == FsKind.Directory)
            {
                directoryBlocks += plan.DirectoryBlocks!.Count;
            }
            else if (inode.Kind == FsKind.Symlink && inode.SymlinkTarget!.Length >= 60)
            {
                symlinkBlocks++;
            }
            else if (inode.Kind == FsKind.RegularFile)
            {
                plan.TreeBlocks = Ext4ExtentTree.TreeBlocks(inode.ExtentCount);
            }
            if (inode.Xattrs.Count > 0)
            {
                plan.Xattrs = inode.Xattrs.Select(x => Ext4Xattrs.Encode(x.Key, x.Value)).ToList();
                plan.XattrsInInode = Ext4Xattrs.FitsInInode(plan.Xattrs);
                if (!plan.XattrsInInode)
                {
                    plan.XattrBlockData = Ext4Xattrs.BuildBlock(plan.Xattrs, () => PathOf(inode));
                    xattrBlocks++;
                }
            }
        }
        long treeBlocks = plans.Sum(p => (long)p.TreeBlocks);
        return directoryBlocks + xattrBlocks + symlinkBlocks + treeBlocks + 1 + _gdtReservedBlocks;
    }

    /// <summary>The image's size and group layout: given by --size (checked to fit), or derived from what was written plus metadata plus free space.</summary>
    private Layout ChooseLayout(long fixedMeta, uint highestInode)
    {
        long dataEnd = _allocator.Next;
        long reservedBlocks = CeilDiv(_options.ReservedBytes, BlockSize);
        Layout layout;
        if (_options.SizeBytes is long size)
        {
            long total = size / BlockSize;
            layout = PlanLayout(total, highestInode, trimSmallLastGroup: true);
            long need = dataEnd + fixedMeta + layout.MetadataBlocks;
            if (need > layout.TotalBlocks)
            {
                layout = PlanLayout(total, highestInode, trimSmallLastGroup: true, minimalInodes: true);
                need = dataEnd + fixedMeta + layout.MetadataBlocks;
            }
            if (need > layout.TotalBlocks)
            {
                throw new VesselException(VesselErrorReason.NoSpace,
                    $"the content needs at least {need * BlockSize >> 20} MiB but --size is {size >> 20} MiB; use a larger --size, or --free to derive the size");
            }
            if (reservedBlocks > layout.TotalBlocks / 2)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"--reserved {_options.ReservedBytes >> 20} MiB is more than half of the image");
            }
        }
        else
        {
            long free = CeilDiv(_options.FreeBytes, BlockSize) + reservedBlocks;
            long total = Math.Max(dataEnd + fixedMeta + free, MinBlocksForInodes(highestInode));
            layout = PlanLayout(total, highestInode, trimSmallLastGroup: false);
            for (int i = 0; i < 8; i++)
            {
                long want = dataEnd + fixedMeta + layout.MetadataBlocks + free;
                if (want <= layout.TotalBlocks)
                {
                    break;
                }
                layout = PlanLayout(want, highestInode, trimSmallLastGroup: false);
            }
            _allocator.Limit = layout.TotalBlocks;
        }
        long totalBlocks = layout.TotalBlocks;
        _allocator.Limit = totalBlocks;
        if (totalBlocks * BlockSize > MaxImageBytes)
        {
            throw new VesselException(VesselErrorReason.NoSpace, "the image would be larger than 16 TiB");
        }
        return layout;
    }

    /// <summary>
    /// The block bitmap with every live file's data marked. Before any metadata lands on blocks
    /// that deleted files once used, every block no live file owns is cleared, so stale data
    /// never reaches the guest.
    /// </summary>
    private byte[] MarkLiveDataAndClearTheRest(Layout layout, List<InodePlan> plans)
    {
        byte[] bitmap = new byte[(long)layout.Groups * BlockSize];
        foreach (InodePlan plan in plans)
        {
            if (plan.Inode.ExtentCount > 0)
            {
                foreach (FsExtent e in plan.Inode.Extents)
                {
                    Mark(bitmap, e.Physical, e.Length);
                }
            }
        }
        ZeroUnowned(bitmap, _image.HighWater / BlockSize);
        return bitmap;
    }

    /// <summary>Allocates the inode tables, bitmaps and journal after the data and marks every metadata block in use.</summary>
    private MetadataPlacement PlaceMetadata(Layout layout, byte[] bitmap)
    {
        int groups = layout.Groups;
        long inodeTables = _allocator.AllocateContiguous((long)groups * layout.InodeTableBlocks);
        long blockBitmaps = _allocator.AllocateContiguous(groups);
        long inodeBitmaps = _allocator.AllocateContiguous(groups);
        long journal = layout.JournalBlocks > 0 ? _allocator.AllocateContiguous(layout.JournalBlocks) : 0;
        Mark(bitmap, 0, 1 + layout.GdtBlocks);
        if (groups > 1)
        {
            Mark(bitmap, BlocksPerGroup, 1 + layout.GdtBlocks);
        }
        Mark(bitmap, inodeTables, (long)groups * layout.InodeTableBlocks);
        Mark(bitmap, blockBitmaps, groups);
        Mark(bitmap, inodeBitmaps, groups);
        var journalExtents = new List<FsExtent>();
        if (layout.JournalBlocks > 0)
        {
            Mark(bitmap, journal, layout.JournalBlocks);
            for (long b = 0; b < layout.JournalBlocks; b += MaxExtentLength)
            {
                journalExtents.Add(new FsExtent((uint)b, journal + b, (int)Math.Min(MaxExtentLength, layout.JournalBlocks - b)));
            }
        }
        return new MetadataPlacement(inodeTables, blockBitmaps, inodeBitmaps, journal, journalExtents);
    }

    /// <summary>Writes directory blocks, long symlink targets and xattr blocks, and builds each inode's extent tree.</summary>
    private void WriteContentBlocks(List<InodePlan> plans, byte[] bitmap)
    {
        foreach (InodePlan plan in plans)
        {
            FsInode inode = plan.Inode;
            List<FsExtent> extents = inode.Extents;
            if (plan.DirectoryBlocks is not null)
            {
                long start = _allocator.AllocateContiguous(plan.DirectoryBlocks.Count);
                Mark(bitmap, start, plan.DirectoryBlocks.Count);
                for (int b = 0; b < plan.DirectoryBlocks.Count; b++)
                {
                    _image.Write((start + b) * BlockSize, plan.DirectoryBlocks[b]);
                }
                extents = [];
                for (long b = 0; b < plan.DirectoryBlocks.Count; b += MaxExtentLength)
                {
                    extents.Add(new FsExtent((uint)b, start + b, (int)Math.Min(MaxExtentLength, plan.DirectoryBlocks.Count - b)));
                }
                inode.Size = (long)plan.DirectoryBlocks.Count * BlockSize;
            }
            else if (inode.Kind == FsKind.Symlink && inode.SymlinkTarget!.Length >= 60)
            {
                long block = _allocator.AllocateContiguous(1);
                Mark(bitmap, block, 1);
                Array.Clear(_blockBuffer);
                inode.SymlinkTarget.CopyTo(_blockBuffer, 0);
                _image.Write(block * BlockSize, _blockBuffer);
                extents = [new FsExtent(0, block, 1)];
            }
            if (plan.XattrBlockData is not null)
            {
                plan.XattrBlock = _allocator.AllocateContiguous(1);
                Mark(bitmap, plan.XattrBlock, 1);
                _image.Write(plan.XattrBlock * BlockSize, plan.XattrBlockData);
            }
            if (inode.Kind is FsKind.RegularFile or FsKind.Directory || (inode.Kind == FsKind.Symlink && inode.SymlinkTarget!.Length >= 60))
            {
                BuildExtentTree(plan, extents, bitmap);
            }
        }
    }

    /// <summary>The journal inode (written with the inode tables) and the journal's superblock.</summary>
    private InodePlan WriteJournal(Layout layout, MetadataPlacement placement, byte[] bitmap, FsTime now)
    {
        long journal = placement.Journal;
        List<FsExtent> journalExtents = placement.JournalExtents;
        var journalPlan = new InodePlan { Inode = new FsInode(FsKind.RegularFile) { Permissions = 0x180, Size = layout.JournalBlocks * BlockSize, Names = 1, ModificationTime = now, AccessTime = now, ChangeTime = now } };
        if (layout.JournalBlocks > 0)
        {
            journalPlan.Inode.Extents.AddRange(journalExtents);
            BuildExtentTree(journalPlan, journalExtents, bitmap);
            JournalSuperblock.Write(_blockBuffer, BlockSize, (uint)layout.JournalBlocks, _uuid);
            _image.Write(journal * BlockSize, _blockBuffer);
        }
        return journalPlan;
    }

    /// <summary>Writes the inode tables group by group; reserved inodes 1..10 count as used (2 is the root, 8 the journal).</summary>
    private GroupUsage WriteInodeTables(Layout layout, MetadataPlacement placement, InodeNumbering numbering, InodePlan journalPlan)
    {
        int groups = layout.Groups;
        long inodeTables = placement.InodeTables;
        uint highestInode = numbering.HighestInode;
        InodePlan?[] byNumber = numbering.ByNumber;
        uint ipg = layout.InodesPerGroup;
        var usedDirsPerGroup = new int[groups];
        var usedInodesPerGroup = new int[groups];
        byte[] table = new byte[(long)ipg * InodeSize];
        int currentGroup = -1;
        void FlushTable()
        {
            if (currentGroup >= 0)
            {
                _image.Write((inodeTables + ((long)currentGroup * layout.InodeTableBlocks)) * BlockSize, table);
            }
        }
        // Reserved inodes 1..10 are used; 2 is the root, 8 the journal.
        for (uint n = 1; n <= highestInode; n++)
        {
            int g = (int)((n - 1) / ipg);
            if (g != currentGroup)
            {
                FlushTable();
                Array.Clear(table);
                currentGroup = g;
            }
            usedInodesPerGroup[g]++;
            Span<byte> raw = table.AsSpan((int)((n - 1) % ipg) * InodeSize, InodeSize);
            if (n == JournalInode && layout.JournalBlocks > 0)
            {
                WriteInode(raw, journalPlan);
            }
            else if (byNumber[n] is InodePlan plan)
            {
                WriteInode(raw, plan);
                if (plan.Inode.Kind == FsKind.Directory)
                {
                    usedDirsPerGroup[g]++;
                }
            }
        }
        FlushTable();
        return new GroupUsage(usedInodesPerGroup, usedDirsPerGroup);
    }

    /// <summary>Writes the block and inode bitmaps and builds the group descriptor table; returns it with the free block count.</summary>
    private (byte[] Gdt, long FreeBlocks) WriteBitmapsAndDescriptors(Layout layout, MetadataPlacement placement, byte[] bitmap, GroupUsage usage)
    {
        int groups = layout.Groups;
        uint ipg = layout.InodesPerGroup;
        long totalBlocks = layout.TotalBlocks;
        (long inodeTables, long blockBitmaps, long inodeBitmaps) = (placement.InodeTables, placement.BlockBitmaps, placement.InodeBitmaps);
        (int[] usedInodesPerGroup, int[] usedDirsPerGroup) = (usage.UsedInodes, usage.UsedDirectories);
        long lastGroupBlocks = totalBlocks - ((long)(groups - 1) * BlocksPerGroup);
        Span<byte> lastGroup = bitmap.AsSpan((groups - 1) * BlockSize, BlockSize);
        for (long b = lastGroupBlocks; b < BlocksPerGroup; b++)
        {
            lastGroup[(int)(b >> 3)] |= (byte)(1 << (int)(b & 7));
        }
        byte[] gdt = new byte[(long)layout.GdtBlocks * BlockSize];
        long freeBlocks = 0;
        byte[] inodeBitmap = new byte[BlockSize];
        for (int g = 0; g < groups; g++)
        {
            Span<byte> groupBitmap = bitmap.AsSpan(g * BlockSize, BlockSize);
            int used = 0;
            for (int w = 0; w < BlockSize; w += 8)
            {
                used += BitOperations.PopCount(BinaryPrimitives.ReadUInt64LittleEndian(groupBitmap[w..]));
            }
            int groupFree = BlocksPerGroup - used;
            freeBlocks += groupFree;
            _image.Write((blockBitmaps + g) * BlockSize, groupBitmap);

            Array.Clear(inodeBitmap);
            int usedInodes = usedInodesPerGroup[g];
            for (int i = 0; i < usedInodes; i++)
            {
                inodeBitmap[i >> 3] |= (byte)(1 << (i & 7));
            }
            for (long i = ipg; i < BlockSize * 8; i++)
            {
                inodeBitmap[i >> 3] |= (byte)(1 << (int)(i & 7));
            }
            _image.Write((inodeBitmaps + g) * BlockSize, inodeBitmap);

            new Ext4GroupDescriptor(
                (uint)(blockBitmaps + g), (uint)(inodeBitmaps + g), (uint)(inodeTables + ((long)g * layout.InodeTableBlocks)),
                (ushort)groupFree, (ushort)(ipg - usedInodes), (ushort)usedDirsPerGroup[g]).Write(gdt.AsSpan(g * GroupDescriptorSize));
        }
        return (gdt, freeBlocks);
    }

    /// <summary>The superblock and descriptors at the start, and their backup in group 1 (sparse_super2).</summary>
    private void WriteSuperblocks(Layout layout, byte[] gdt, long freeBlocks, uint highestInode, InodePlan journalPlan, FsTime now)
    {
        int groups = layout.Groups;
        uint ipg = layout.InodesPerGroup;
        long totalBlocks = layout.TotalBlocks;
        long reservedBlocks = CeilDiv(_options.ReservedBytes, BlockSize);
        var sb = new Ext4Superblock
        {
            InodesCount = ipg * (uint)groups,
            BlocksCount = (ulong)totalBlocks,
            ReservedBlocksCount = (ulong)reservedBlocks,
            FreeBlocksCount = (ulong)freeBlocks,
            FreeInodesCount = (ipg * (uint)groups) - highestInode,
            InodesPerGroup = ipg,
            Timestamp = (uint)now.Seconds,
            FeatureCompat = Ext4Features.CompatExtAttr | Ext4Features.CompatDirIndex | Ext4Features.CompatSparseSuper2
                | (layout.JournalBlocks > 0 ? Ext4Features.CompatHasJournal : 0),
            FeatureIncompat = Ext4Features.IncompatFiletype | Ext4Features.IncompatExtents | Ext4Features.IncompatFlexBg,
            FeatureRoCompat = Ext4Features.RoCompatSparseSuper | Ext4Features.RoCompatLargeFile | Ext4Features.RoCompatDirNlink | Ext4Features.RoCompatExtraIsize,
            Uuid = _uuid,
            Label = _options.Label,
            HashSeed = HashSeedBytes(),
            JournalInode = layout.JournalBlocks > 0 ? JournalInode : 0,
            BackupGroup0 = groups > 1 ? 1u : 0u,
            BackupGroup1 = 0,
        };
        if (layout.JournalBlocks > 0)
        {
            for (int i = 0; i < 15; i++)
            {
                sb.JournalBlocks[i] = BinaryPrimitives.ReadUInt32LittleEndian(((ReadOnlySpan<byte>)journalPlan.IBlock)[(i * 4)..]);
            }
            sb.JournalBlocks[15] = (uint)(journalPlan.Inode.Size >> 32);
            sb.JournalBlocks[16] = (uint)journalPlan.Inode.Size;
        }
        byte[] sbBlock = new byte[BlockSize];
        sb.Write(sbBlock.AsSpan(1024));
        _image.Write(0, sbBlock);
        _image.Write(BlockSize, gdt);
        if (groups > 1)
        {
            sb.BlockGroupNumber = 1;
            Array.Clear(sbBlock);
            sb.Write(sbBlock); // backups start at the group's first byte
            _image.Write((long)BlocksPerGroup * BlockSize, sbBlock);
            _image.Write(((long)BlocksPerGroup + 1) * BlockSize, gdt);
        }
    }

    private readonly record struct Layout(long TotalBlocks, int Groups, uint InodesPerGroup, int InodeTableBlocks, int GdtBlocks, long JournalBlocks)
    {
        public long MetadataBlocks => ((long)Groups * (InodeTableBlocks + 2)) + JournalBlocks + 1 + GdtBlocks;
    }

    /// <summary>The path of <paramref name="target"/> in the tree, for an error message (a search: errors only).</summary>
    private string PathOf(FsInode target)
    {
        var pending = new Stack<(FsInode Dir, string Path)>();
        pending.Push((Root, string.Empty));
        while (pending.Count > 0)
        {
            (FsInode dir, string path) = pending.Pop();
            foreach ((string key, FsInode child) in dir.Children!)
            {
                string childPath = path + "/" + FsInode.Display(key);
                if (ReferenceEquals(child, target))
                {
                    return childPath;
                }
                if (child.Children is not null)
                {
                    pending.Push((child, childPath));
                }
            }
        }
        return $"inode {target.Number}";
    }

    /// <summary>
    /// A derived size has room for the inodes, not only the bytes: a group holds at most one
    /// bitmap block's worth of inodes (8 per byte), so many small files need more groups than
    /// their data does (300k empty files: 11 groups). An eighth more for the files a sandbox adds.
    /// </summary>
    private long MinBlocksForInodes(uint highestInode)
    {
        long inodes = highestInode + 64L;
        inodes += inodes / 8;
        long groups = CeilDiv(inodes, BlockSize * 8L);
        long minLast = 1 + _gdtReservedBlocks + 64;
        return groups <= 1 ? 0 : ((groups - 1) * BlocksPerGroup) + minLast;
    }

    private Layout PlanLayout(long totalBlocks, uint highestInode, bool trimSmallLastGroup, bool minimalInodes = false)
    {
        int groups = (int)CeilDiv(totalBlocks, BlocksPerGroup);
        long lastGroupBlocks = totalBlocks - ((long)(groups - 1) * BlocksPerGroup);
        long minLast = 1 + _gdtReservedBlocks + 64; // a backup superblock and descriptors need room
        if (groups > 1 && lastGroupBlocks < minLast)
        {
            if (trimSmallLastGroup)
            {
                groups--;
                totalBlocks = (long)groups * BlocksPerGroup;
            }
            else
            {
                totalBlocks += minLast - lastGroupBlocks;
            }
        }
        int gdtBlocks = (int)CeilDiv((long)groups * GroupDescriptorSize, BlockSize);
        long wanted = highestInode + 64;
        if (!minimalInodes)
        {
            // The image's own files plus mke2fs's ratio over the space still free, so a
            // sandbox can create files in proportion to the room it has.
            long freeBytes = Math.Max(0, totalBlocks - _allocator.Next) * BlockSize;
            wanted = Math.Max(wanted + (freeBytes / _options.BytesPerInode), totalBlocks * BlockSize / _options.BytesPerInode);
        }
        else
        {
            wanted += wanted / 8;
        }
        long ipg = CeilDiv(CeilDiv(wanted, groups), 16) * 16; // whole inode-table blocks
        ipg = Math.Clamp(ipg, 16, BlocksPerGroup);
        if (ipg * groups < highestInode)
        {
            throw new VesselException(VesselErrorReason.NoSpace,
                $"{highestInode} inodes do not fit in {groups} block groups ({totalBlocks * BlockSize >> 20} MiB): they need at least {Math.Max(MinBlocksForInodes(highestInode), (long)groups * BlocksPerGroup + 1) * BlockSize >> 20} MiB; use a larger --size, or leave --size out to derive it");
        }
        if (ipg * groups > uint.MaxValue)
        {
            ipg = uint.MaxValue / groups / 16 * 16;
        }
        int itb = (int)(ipg * InodeSize / BlockSize);
        return new Layout(totalBlocks, groups, (uint)ipg, itb, gdtBlocks, JournalSuperblock.DefaultBlocks(totalBlocks));
    }

    /// <summary>Writes entry <c>index</c> of one extent-tree level (a leaf extent or an index) into its 12-byte slot.</summary>
    private delegate void ExtentEntryWriter(Span<byte> slot, int index);

    private void BuildExtentTree(InodePlan plan, List<FsExtent> extents, byte[] bitmap)
    {
        // Leaves of up to 340 extents, then (if needed) one level of index blocks
        // (Ext4ExtentTree.TreeBlocks refused deeper trees), until the inode's 4 slots hold the top.
        int count = extents.Count;
        int depth = 0;
        int treeBlocks = 0;
        Func<int, uint> firstOf = i => extents[i].Logical;
        ExtentEntryWriter write = (slot, i) => Ext4ExtentTree.WriteLeaf(slot, extents[i]);
        while (count > Ext4ExtentTree.InodeEntries)
        {
            List<(uint First, long Block)> nodes = WriteExtentBlocks(count, depth, firstOf, write, bitmap);
            treeBlocks += nodes.Count;
            count = nodes.Count;
            depth++;
            firstOf = i => nodes[i].First;
            write = (slot, i) => Ext4ExtentTree.WriteIndex(slot, nodes[i].First, nodes[i].Block);
        }
        if (depth > 0)
        {
            plan.TreeBlocks = treeBlocks;
        }
        WriteExtentNode(plan.IBlock, 0, count, Ext4ExtentTree.InodeEntries, depth, write);
    }

    /// <summary>One level of an extent tree in blocks of up to 340 entries: each block's first logical block and where it lies.</summary>
    private List<(uint First, long Block)> WriteExtentBlocks(int count, int depth, Func<int, uint> firstOf, ExtentEntryWriter write, byte[] bitmap)
    {
        var nodes = new List<(uint First, long Block)>();
        for (int i = 0; i < count; i += Ext4ExtentTree.BlockEntries)
        {
            byte[] node = new byte[BlockSize];
            WriteExtentNode(node, i, Math.Min(Ext4ExtentTree.BlockEntries, count - i), Ext4ExtentTree.BlockEntries, depth, write);
            long block = _allocator.AllocateContiguous(1);
            Mark(bitmap, block, 1);
            _image.Write(block * BlockSize, node);
            nodes.Add((firstOf(i), block));
        }
        return nodes;
    }

    /// <summary>A node's header and entries <c>first</c> to <c>first + n - 1</c> of its level, in the inode or in a block.</summary>
    private static void WriteExtentNode(Span<byte> node, int first, int n, int max, int depth, ExtentEntryWriter write)
    {
        Ext4ExtentTree.WriteHeader(node, n, max, depth);
        for (int k = 0; k < n; k++)
        {
            write(node[(12 + (12 * k))..], first + k);
        }
    }

    private static void WriteInode(Span<byte> d, InodePlan plan)
    {
        FsInode inode = plan.Inode;
        ushort typeBits = inode.Kind switch
        {
            FsKind.RegularFile => 0x8000,
            FsKind.Directory => 0x4000,
            FsKind.Symlink => 0xA000,
            FsKind.CharacterDevice => 0x2000,
            FsKind.BlockDevice => 0x6000,
            FsKind.Fifo => 0x1000,
            _ => 0xC000,
        };
        BinaryPrimitives.WriteUInt16LittleEndian(d, (ushort)(typeBits | (inode.Permissions & 0xFFF)));
        BinaryPrimitives.WriteUInt16LittleEndian(d[2..], (ushort)inode.Uid);
        long size = inode.Kind == FsKind.Symlink ? inode.SymlinkTarget!.Length : inode.Size;
        BinaryPrimitives.WriteUInt32LittleEndian(d[4..], (uint)size);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], (uint)inode.AccessTime.Seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(d[12..], (uint)inode.ChangeTime.Seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(d[16..], (uint)inode.ModificationTime.Seconds);
        BinaryPrimitives.WriteUInt16LittleEndian(d[24..], (ushort)inode.Gid);
        int links = inode.Kind == FsKind.Directory ? 2 + plan.SubdirCount : inode.Names;
        if (links >= 65000)
        {
            links = 1; // dir_nlink: "too many to count"
        }
        BinaryPrimitives.WriteUInt16LittleEndian(d[26..], (ushort)links);

        long blocks = plan.TreeBlocks + (plan.XattrBlockData is not null ? 1 : 0);
        uint flags = 0;
        Span<byte> iblock = d.Slice(40, 60);
        switch (inode.Kind)
        {
            case FsKind.RegularFile:
                for (int i = 0; i < inode.ExtentCount; i++)
                {
                    blocks += inode.Extents[i].Length;
                }
                flags |= 0x80000; // EXT4_EXTENTS_FL
                ((ReadOnlySpan<byte>)plan.IBlock).CopyTo(iblock);
                break;
            case FsKind.Directory:
                blocks += plan.DirectoryBlocks!.Count;
                flags |= 0x80000;
                if (plan.Indexed)
                {
                    flags |= 0x1000; // EXT4_INDEX_FL
                }
                ((ReadOnlySpan<byte>)plan.IBlock).CopyTo(iblock);
                break;
            case FsKind.Symlink:
                if (inode.SymlinkTarget!.Length < 60)
                {
                    inode.SymlinkTarget.CopyTo(iblock); // fast symlink: the target lives in i_block
                }
                else
                {
                    blocks += 1;
                    flags |= 0x80000;
                    ((ReadOnlySpan<byte>)plan.IBlock).CopyTo(iblock);
                }
                break;
            case FsKind.CharacterDevice:
            case FsKind.BlockDevice:
                uint major = (uint)inode.DeviceMajor;
                uint minor = (uint)inode.DeviceMinor;
                if (major < 256 && minor < 256)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(iblock, (major << 8) | minor);
                }
                else
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(iblock[4..], (minor & 0xFF) | (major << 8) | ((minor & ~0xFFu) << 12));
                }
                break;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(d[28..], checked((uint)(blocks * (BlockSize / 512))));
        BinaryPrimitives.WriteUInt32LittleEndian(d[32..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(d[104..], (uint)plan.XattrBlock);
        BinaryPrimitives.WriteUInt32LittleEndian(d[108..], (uint)(size >> 32));
        BinaryPrimitives.WriteUInt16LittleEndian(d[118..], (ushort)(plan.XattrBlock >> 32));
        BinaryPrimitives.WriteUInt16LittleEndian(d[120..], (ushort)(inode.Uid >> 16));
        BinaryPrimitives.WriteUInt16LittleEndian(d[122..], (ushort)(inode.Gid >> 16));
        BinaryPrimitives.WriteUInt16LittleEndian(d[128..], 32); // i_extra_isize
        BinaryPrimitives.WriteUInt32LittleEndian(d[132..], ExtraTime(inode.ChangeTime));
        BinaryPrimitives.WriteUInt32LittleEndian(d[136..], ExtraTime(inode.ModificationTime));
        BinaryPrimitives.WriteUInt32LittleEndian(d[140..], ExtraTime(inode.AccessTime));
        BinaryPrimitives.WriteUInt32LittleEndian(d[144..], (uint)inode.ModificationTime.Seconds); // i_crtime
        BinaryPrimitives.WriteUInt32LittleEndian(d[148..], ExtraTime(inode.ModificationTime));
        if (plan.Xattrs is not null && plan.XattrsInInode)
        {
            Ext4Xattrs.WriteInInode(d[Ext4Xattrs.InodeRegionOffset..], plan.Xattrs);
        }
    }

    /// <summary>ext4_encode_extra_time: two epoch bits extend seconds past 2038, 30 bits of nanoseconds.</summary>
    private static uint ExtraTime(FsTime t)
    {
        long epoch = ((t.Seconds - (int)t.Seconds) >> 32) & 3;
        return (uint)epoch | ((uint)t.Nanoseconds << 2);
    }

    private static void Mark(byte[] bitmap, long start, long length)
    {
        for (long b = start; b < start + length; b++)
        {
            long byteIndex = b >> 3;
            byte bit = (byte)(1 << (int)(b & 7));
            if (byteIndex >= bitmap.Length)
            {
                throw new InvalidOperationException($"block {b} lies past the end of the filesystem");
            }
            if ((bitmap[byteIndex] & bit) != 0)
            {
                throw new InvalidOperationException($"block {b} is allocated twice");
            }
            bitmap[byteIndex] |= bit;
        }
    }

    private void ZeroUnowned(byte[] bitmap, long highWater)
    {
        long firstData = 1 + _gdtReservedBlocks;
        long b = firstData;
        long limit = Math.Min(highWater, (long)bitmap.Length * 8);
        while (b < limit)
        {
            if ((bitmap[b >> 3] & (1 << (int)(b & 7))) != 0)
            {
                b++;
                continue;
            }
            long start = b;
            while (b < limit && (bitmap[b >> 3] & (1 << (int)(b & 7))) == 0)
            {
                b++;
            }
            _image.Zero(start * BlockSize, (b - start) * BlockSize);
        }
    }

    private byte[] HashSeedBytes()
    {
        if (_hashSeed is { Length: 16 } seed)
        {
            return seed;
        }
        byte[] derived = System.Security.Cryptography.SHA256.HashData(_uuid.ToByteArray())[..16];
        return derived;
    }

    private uint[] HashSeedWords()
    {
        byte[] b = HashSeedBytes();
        return [BinaryPrimitives.ReadUInt32LittleEndian(b), BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(4)),
            BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8)), BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(12))];
    }
}
