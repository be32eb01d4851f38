using System.Buffers;

namespace Vessel.Ext4;

/// <summary>Settings for one image.</summary>
public sealed record Ext4WriterOptions
{
    /// <summary>Fixed image size; null derives it from the content plus <see cref="FreeBytes"/>.</summary>
    public long? SizeBytes { get; init; }

    /// <summary>Free space to leave when the size is derived.</summary>
    public long FreeBytes { get; init; } = 512L << 20;

    /// <summary>Blocks reserved for root (tune2fs -r), in bytes.</summary>
    public long ReservedBytes { get; init; }

    /// <summary>Bytes of image per inode when sizing the inode tables (mke2fs's inode_ratio).</summary>
    public int BytesPerInode { get; init; } = 16384;

    public string Label { get; init; } = string.Empty;

    /// <summary>Filesystem UUID; derive it from the content for reproducible images.</summary>
    public Guid Uuid { get; init; } = Guid.NewGuid();

    /// <summary>Seed of the htree directory hash (16 bytes); derived from <see cref="Uuid"/> when null.</summary>
    public byte[]? HashSeed { get; init; }

    /// <summary>Creation time written into the superblock.</summary>
    public DateTimeOffset Timestamp { get; init; } = DateTimeOffset.UtcNow;
}

/// <summary>What a finished image holds.</summary>
public sealed record Ext4Summary(long SizeBytes, long BlockCount, long FreeBlocks, long InodeCount, long FreeInodes, long Files, long Directories, long DataBytes, long BytesWritten);

/// <summary>
/// Writes an ext4 filesystem image in one streaming pass, without root or mounts: file data
/// goes to disk as it arrives; inodes, directories, bitmaps and the superblock are written
/// by <see cref="Finish"/>. Layout and feature set: docs/formats/ext4-subset.md.
/// A writer that failed is faulted and refuses further calls.
/// </summary>
public sealed partial class Ext4Writer : IDisposable
{
    public const int BlockSize = 4096;
    public const int BlocksPerGroup = 32768; // one bitmap block covers a group
    public const int InodeSize = 256;
    public const int FirstInode = 11; // inodes 1-10 are reserved; 11 is lost+found
    public const long MaxImageBytes = 16L << 40; // 32-bit block numbers with 4 KiB blocks

    private const int MaxExtentLength = 32768; // longer runs are "uninitialized" extents in ext4

    private readonly string _path;
    private readonly Ext4WriterOptions _options;
    private readonly ImageFile _image;
    private readonly BlockAllocator _allocator;
    private readonly List<(long Start, long Length)> _fileRuns = []; // the open file's reserved runs
    private FileData? _openFile;
    private readonly int _gdtReservedBlocks;
    private readonly byte[] _blockBuffer = new byte[BlockSize];
    private Exception? _fault;
    private bool _finished;
    private Guid _uuid;
    private byte[]? _hashSeed;

    public Ext4Writer(string path, Ext4WriterOptions options)
    {
        _path = path;
        _options = options;
        _uuid = options.Uuid;
        _hashSeed = options.HashSeed;
        if (options.SizeBytes is long size && (size < 1L << 20 || size > MaxImageBytes))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"image size {size} bytes is outside 1 MiB..16 TiB");
        }
        long maxBlocks = options.SizeBytes is long s ? s / BlockSize : MaxImageBytes / BlockSize;
        // Room for group descriptors of a filesystem up to 1 TiB (or 16x the fixed size) right
        // after the primary copy, so resize2fs can grow without moving data.
        long growGroups = options.SizeBytes is null
            ? 8192
            : Math.Max(CeilDiv(maxBlocks, BlocksPerGroup), Math.Min(8192, CeilDiv(maxBlocks * 16, BlocksPerGroup)));
        _gdtReservedBlocks = (int)CeilDiv(growGroups * GroupDescriptorSize, BlockSize);
        long firstData = 1 + _gdtReservedBlocks;
        // The backup superblock + descriptors of group 1 (sparse_super2 keeps just that one).
        var reserved = new[] { ((long)BlocksPerGroup, 1L + _gdtReservedBlocks) };
        _allocator = new BlockAllocator(firstData, options.SizeBytes is long fixedSize ? fixedSize / BlockSize : long.MaxValue, reserved);
        _image = new ImageFile(path);

        Root = new FsInode(FsKind.Directory)
        {
            Permissions = 0x1ED, // 0755
            Names = 1,
        };
        Root.Parent = Root;
        var now = new FsTime(options.Timestamp.ToUnixTimeSeconds(), 0);
        Root.ModificationTime = Root.AccessTime = Root.ChangeTime = now;
    }

    public FsInode Root { get; }

    /// <summary>Bytes of file data written so far.</summary>
    public long DataBytes { get; private set; }

    public string Path => _path;

    /// <summary>How long the writer waited for the disk so far.</summary>
    public TimeSpan WaitedForDisk => _image.WaitedForDisk;

    /// <summary>
    /// Replaces the filesystem UUID and htree hash seed of <see cref="Ext4WriterOptions"/>;
    /// they are written only by <see cref="Finish"/>, so an identity derived from content
    /// that is hashed while it streams can be given once the content was read.
    /// </summary>
    public void SetIdentity(Guid uuid, byte[] hashSeed)
    {
        ThrowIfFaulted();
        if (hashSeed.Length != 16)
        {
            throw new ArgumentException("the hash seed is 16 bytes", nameof(hashSeed));
        }
        _uuid = uuid;
        _hashSeed = hashSeed;
    }

    /// <summary>Adds <paramref name="child"/> under <paramref name="directory"/> as <paramref name="key"/>.</summary>
    public void Link(FsInode directory, string key, FsInode child)
    {
        ThrowIfFaulted();
        directory.Children![key] = child;
        child.Names++;
        if (child.Kind == FsKind.Directory)
        {
            child.Parent = directory;
        }
    }

    /// <summary>Removes the entry <paramref name="key"/> (recursively for directories) and frees what nothing else names.</summary>
    public void Unlink(FsInode directory, string key)
    {
        ThrowIfFaulted();
        if (!directory.Children!.Remove(key, out FsInode? child))
        {
            return;
        }
        Release(child);
    }

    private void Release(FsInode inode)
    {
        inode.Names--;
        if (inode.Names > 0)
        {
            return;
        }
        if (inode.Kind == FsKind.Directory)
        {
            foreach (FsInode c in inode.Children!.Values)
            {
                Release(c);
            }
            inode.Children.Clear();
        }
        if (inode.ExtentCount > 0)
        {
            foreach (FsExtent e in inode.Extents)
            {
                _allocator.Free(e.Physical, e.Length);
            }
            inode.Extents.Clear();
        }
    }

    /// <summary>
    /// Starts the data of a regular file. Write its bytes in ascending offsets, then call
    /// <see cref="FileData.Complete"/>. All-zero blocks become holes.
    /// </summary>
    public FileData BeginFile(FsInode inode, long size, long maxBlocks)
    {
        ThrowIfFaulted();
        if (inode.Kind != FsKind.RegularFile)
        {
            throw new InvalidOperationException("only regular files have streamed data");
        }
        inode.Size = size;
        long blocks = Math.Min(maxBlocks, CeilDiv(size, BlockSize));
        if (_openFile is not null)
        {
            throw new InvalidOperationException("the previous file's data is not complete");
        }
        List<(long Start, long Length)> runs;
        try
        {
            // One list for every file: files are written one at a time.
            runs = _allocator.Allocate(blocks, _fileRuns);
        }
        catch (VesselException e) when (e.Reason == VesselErrorReason.NoSpace)
        {
            throw Fault(new VesselException(VesselErrorReason.NoSpace,
                $"the content does not fit in an image of {_options.SizeBytes} bytes (out of space after {DataBytes} bytes of file data); use a larger --size, or --free to derive the size"));
        }
        _openFile = new FileData(this, inode, runs);
        return _openFile;
    }

    /// <summary>Marks the writer faulted with <paramref name="e"/> and returns it for throwing.</summary>
    public Exception Fault(Exception e)
    {
        _fault ??= e;
        return e;
    }

    public void Dispose()
    {
        _image.Dispose();
        if (!_finished)
        {
            TryDelete(_path);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private void ThrowIfFaulted()
    {
        if (_fault is not null)
        {
            throw new InvalidOperationException("the ext4 writer failed earlier and refuses further calls", _fault);
        }
        if (_finished)
        {
            throw new InvalidOperationException("the image is already finished");
        }
    }

    internal static long CeilDiv(long a, long b) => (a + b - 1) / b;

    /// <summary>Streams one file's data into blocks reserved for it.</summary>
    public sealed class FileData
    {
        private readonly Ext4Writer _writer;
        private readonly FsInode _inode;
        private readonly List<(long Start, long Length)> _runs;
        private byte[]? _pending; // the partial block being filled, pooled: most small files need one only at their end
        private int _runIndex;
        private long _runUsed;
        private long _pendingBlock = -1;
        private long _nextOffset;

        internal FileData(Ext4Writer writer, FsInode inode, List<(long Start, long Length)> runs)
        {
            _writer = writer;
            _inode = inode;
            _runs = runs;
        }

        /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>; offsets must not go backwards.</summary>
        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            if (offset < _nextOffset || offset + data.Length > _inode.Size)
            {
                throw _writer.Fault(new InvalidDataException($"file data at {offset} is out of order or past the file's size {_inode.Size}"));
            }
            _writer.DataBytes += data.Length;
            while (data.Length > 0)
            {
                long block = offset / BlockSize;
                int inBlock = (int)(offset % BlockSize);
                if (_pendingBlock >= 0 && _pendingBlock != block)
                {
                    FlushPending();
                }
                if (inBlock == 0 && _pendingBlock < 0 && data.Length >= BlockSize)
                {
                    // Whole blocks straight from the caller's buffer.
                    int whole = data.Length / BlockSize * BlockSize;
                    WriteBlocks(block, data[..whole]);
                    data = data[whole..];
                    offset += whole;
                    continue;
                }
                if (_pendingBlock < 0)
                {
                    _pendingBlock = block;
                    _pending ??= ArrayPool<byte>.Shared.Rent(BlockSize);
                    Array.Clear(_pending, 0, BlockSize);
                }
                int take = Math.Min(BlockSize - inBlock, data.Length);
                data[..take].CopyTo(_pending.AsSpan(inBlock));
                data = data[take..];
                offset += take;
            }
            _nextOffset = offset;
        }

        /// <summary>Writes the last partial block and returns unused reserved blocks.</summary>
        public void Complete()
        {
            if (_pendingBlock >= 0)
            {
                FlushPending();
            }
            if (_pending is not null)
            {
                ArrayPool<byte>.Shared.Return(_pending);
                _pending = null;
            }
            for (int i = _runs.Count - 1; i >= _runIndex; i--)
            {
                var (s, l) = _runs[i];
                long used = i == _runIndex ? _runUsed : 0;
                _writer._allocator.Free(s + used, l - used);
            }
            _runs.Clear();
            if (_writer._openFile == this)
            {
                _writer._openFile = null;
            }
        }

        private void FlushPending()
        {
            WriteBlocks(_pendingBlock, _pending!.AsSpan(0, BlockSize));
            _pendingBlock = -1;
        }

        private void WriteBlocks(long logicalBlock, ReadOnlySpan<byte> data)
        {
            int count = data.Length / BlockSize;
            int i = 0;
            while (i < count)
            {
                // Skip all-zero blocks: they stay holes.
                if (data.Slice(i * BlockSize, BlockSize).IndexOfAnyExcept((byte)0) < 0)
                {
                    i++;
                    continue;
                }
                int j = i + 1;
                while (j < count && data.Slice(j * BlockSize, BlockSize).IndexOfAnyExcept((byte)0) >= 0)
                {
                    j++;
                }
                // Blocks i..j-1 are data: place them in the reserved runs.
                int k = i;
                while (k < j)
                {
                    if (_runIndex >= _runs.Count)
                    {
                        throw _writer.Fault(new InvalidOperationException("file data exceeded its reservation"));
                    }
                    var (start, length) = _runs[_runIndex];
                    long avail = length - _runUsed;
                    int n = (int)Math.Min(avail, j - k);
                    long physical = start + _runUsed;
                    _writer._image.Write(physical * BlockSize, data.Slice(k * BlockSize, n * BlockSize));
                    AddExtent(checked((uint)(logicalBlock + k)), physical, n);
                    _runUsed += n;
                    if (_runUsed == length)
                    {
                        _runIndex++;
                        _runUsed = 0;
                    }
                    k += n;
                }
                i = j;
            }
        }

        private void AddExtent(uint logical, long physical, int length)
        {
            List<FsExtent> extents = _inode.Extents;
            while (length > 0)
            {
                if (extents.Count > 0)
                {
                    FsExtent last = extents[^1];
                    if (last.Logical + (uint)last.Length == logical && last.Physical + last.Length == physical && last.Length < MaxExtentLength)
                    {
                        int grow = Math.Min(length, MaxExtentLength - last.Length);
                        extents[^1] = last with { Length = last.Length + grow };
                        logical += (uint)grow;
                        physical += grow;
                        length -= grow;
                        continue;
                    }
                }
                int take = Math.Min(length, MaxExtentLength);
                extents.Add(new FsExtent(logical, physical, take));
                logical += (uint)take;
                physical += take;
                length -= take;
            }
        }
    }
}
