using System.Buffers;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;
using Vessel.Common;
using Vessel.Interop;

namespace Vessel.Blocks;

/// <summary>
/// A copy-on-write device over a build. Writes land in a sparse cache file (same offsets as
/// the device) and set the block's bit in the data bitmap; trim and write-zeroes set the zero
/// bitmap instead and punch the cache. Reads take each block from the cache, zeros, or the
/// base build. The device may be larger or smaller than its base (a resize: past the base's
/// end it reads as zeros). <see cref="ExportAsync"/> turns the dirty blocks into a new build
/// whose data holds only them, in time proportional to the dirty bytes;
/// <see cref="ExportChangesAsync"/> exports only the blocks changed since its previous call,
/// over the build that call published (one layer per template build phase). The cache file is
/// deleted on disposal; the base build stays open (its owner disposes it) unless
/// <c>ownsBase</c> was set.
/// </summary>
internal sealed class OverlayDevice : IBlockDevice, IDisposable
{
    private const int CopyChunk = 1 << 20;
    private readonly SafeFileHandle _cache;
    private volatile bool _cacheNoWaitUnsupported;
    private readonly ulong[] _data;
    private readonly ulong[] _zero;
    private readonly ulong[] _pending; // written or zeroed since the last ExportChangesAsync
    private readonly Build _device; // the base at this device's size
    private readonly long _blocks;
    private readonly int _shift;
    private readonly RangeLock _writers = new();
    private readonly bool _ownsBase;
    private readonly ILogger _logger;
    private BuildHeader? _lastExport;
    private int _disposed;

    private OverlayDevice(Build baseBuild, string cachePath, bool ownsBase, ILogger? logger, long size)
    {
        Base = baseBuild;
        CachePath = cachePath;
        _ownsBase = ownsBase;
        _logger = logger ?? NullLogger.Instance;
        _device = size == baseBuild.Size ? baseBuild : baseBuild.Resize(size);
        _blocks = size / baseBuild.BlockSize;
        _shift = System.Numerics.BitOperations.Log2((uint)baseBuild.BlockSize);
        _data = new ulong[(_blocks + 63) / 64];
        _zero = new ulong[(_blocks + 63) / 64];
        _pending = new ulong[(_blocks + 63) / 64];
        _cache = File.OpenHandle(cachePath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        RandomAccess.SetLength(_cache, size); // sparse: only written blocks take space
    }

    public Build Base { get; }

    public string CachePath { get; }

    public long Size => _device.Size;

    public int BlockSize => Base.BlockSize;

    public bool IsReadOnly => false;

    /// <summary>Blocks written or zeroed since the overlay was created.</summary>
    public long DirtyBlocks => DirtyBits.CountBits(_data) + DirtyBits.CountBits(_zero);

    /// <summary>Bytes an export would store (blocks holding written data).</summary>
    public long DirtyDataBytes => DirtyBits.CountBits(_data) << _shift;

    private const string CacheSuffix = ".cache";

    /// <summary>
    /// Deletes overlay cache files in <paramref name="workDirectory"/> whose owner process is
    /// gone (a build or sandbox killed with SIGKILL); returns what it removed.
    /// </summary>
    public static IReadOnlyList<string> ReclaimLeftoverCaches(string workDirectory) =>
        WorkLeftovers.DeleteFiles(FindLeftoverCaches(workDirectory));

    /// <summary>The overlay cache files in <paramref name="workDirectory"/> whose owner process is gone.</summary>
    public static IReadOnlyList<string> FindLeftoverCaches(string workDirectory)
    {
        if (!Directory.Exists(workDirectory))
        {
            return [];
        }
        return Directory.EnumerateFiles(workDirectory).Where(f => f.EndsWith(CacheSuffix, StringComparison.Ordinal)).Where(f =>
        {
            string[] parts = Path.GetFileName(f).Split('.');
            return parts.Length == 4 && ProcessOwner.IsStamp(parts[1]) && !ProcessOwner.IsAlive(parts[1]);
        }).ToList();
    }

    /// <summary>The build the next <see cref="ExportChangesAsync"/> goes on top of: the last one it published, or the base.</summary>
    public BuildHeader LastExport => _lastExport ?? Base.Header;

    /// <summary>Whether anything was written or zeroed since the last <see cref="ExportChangesAsync"/>.</summary>
    public bool HasPendingChanges => _pending.AsSpan().ContainsAnyExcept(0UL);

    /// <summary>Bytes of written data <see cref="ExportChangesAsync"/> would store.</summary>
    public long PendingDataBytes
    {
        get
        {
            long count = 0;
            for (int i = 0; i < _pending.Length; i++)
            {
                count += System.Numerics.BitOperations.PopCount(Volatile.Read(ref _pending[i]) & Volatile.Read(ref _data[i]));
            }
            return count << _shift;
        }
    }

    /// <summary>
    /// Creates an overlay whose cache file lives in <paramref name="workDirectory"/>, <paramref name="size"/>
    /// bytes long (the base's size unless given; a whole number of blocks).
    /// </summary>
    public static OverlayDevice Create(Build baseBuild, string workDirectory, bool ownsBase = false, ILogger? logger = null, long? size = null)
    {
        Directory.CreateDirectory(workDirectory);
        // Named "<base>.<pid>-<start>.<nonce>.cache" (ProcessOwner) so that whoever finds it after
        // a crash can tell whether its owner still runs (LocalLayerStorage, ReclaimLeftoverCaches).
        string path = Path.Combine(workDirectory, $"{baseBuild.Id:N}.{ProcessOwner.Current}.{Guid.NewGuid():N}{CacheSuffix}");
        return new OverlayDevice(baseBuild, path, ownsBase, logger, size ?? baseBuild.Size);
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        long block = offset >> _shift;
        while (destination.Length > 0)
        {
            (long run, BlockState state) = Run(block, ((offset + destination.Length - 1) >> _shift) + 1);
            long runEnd = (block + run) << _shift;
            int n = (int)Math.Min(destination.Length, runEnd - offset);
            Memory<byte> part = destination[..n];
            switch (state)
            {
                case BlockState.Clean:
                    await _device.ReadAsync(offset, part, cancellationToken);
                    break;
                case BlockState.Zero:
                    part.Span.Clear();
                    break;
                default:
                    ReadCache(offset, part.Span);
                    break;
            }
            destination = destination[n..];
            offset += n;
            block += run;
        }
    }

    public bool TryReadCached(long offset, Span<byte> destination)
    {
        long block = offset >> _shift;
        while (destination.Length > 0)
        {
            (long run, BlockState state) = Run(block, ((offset + destination.Length - 1) >> _shift) + 1);
            long runEnd = (block + run) << _shift;
            int n = (int)Math.Min(destination.Length, runEnd - offset);
            Span<byte> part = destination[..n];
            switch (state)
            {
                case BlockState.Clean:
                    if (!_device.TryReadCached(offset, part))
                    {
                        return false;
                    }
                    break;
                case BlockState.Zero:
                    part.Clear();
                    break;
                default:
                    if (_cacheNoWaitUnsupported)
                    {
                        return false;
                    }
                    int got = LinuxFile.ReadCached(_cache, part, offset);
                    _cacheNoWaitUnsupported = got < 0;
                    if (got != n)
                    {
                        return false;
                    }
                    break;
            }
            destination = destination[n..];
            offset += n;
            block += run;
        }
        return true;
    }

    public bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges)
    {
        // Clean blocks come from the immutable build below and zeroed ones are zeros; the cache
        // file is rewritten in place by later writes, so a read touching it is always copied.
        long block = offset >> _shift;
        long end = ((offset + length - 1) >> _shift) + 1;
        while (length > 0)
        {
            (long run, BlockState state) = Run(block, end);
            int n = (int)Math.Min(length, ((block + run) << _shift) - offset);
            switch (state)
            {
                case BlockState.Clean:
                    if (!_device.TryGetCachedFileRanges(offset, n, ranges))
                    {
                        return false;
                    }
                    break;
                case BlockState.Zero:
                    ranges.Add(new FileRange(null, 0, n));
                    break;
                default:
                    return false;
            }
            length -= n;
            offset += n;
            block += run;
        }
        return true;
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        if (source.IsEmpty)
        {
            return;
        }
        long first = offset >> _shift;
        long last = (offset + source.Length - 1) >> _shift;
        using IDisposable held = await _writers.AcquireAsync(first, last + 1, cancellationToken);
        long alignedStart = first << _shift;
        long alignedEnd = (last + 1) << _shift;
        if (offset == alignedStart && offset + source.Length == alignedEnd)
        {
            RandomAccess.Write(_cache, source.Span, offset);
        }
        else
        {
            // Partial head or tail block: merge with the block's current content first.
            await MergeWriteAsync(offset, source, first, last, cancellationToken);
        }
        DirtyBits.SetRange(_data, first, last + 1, true);
        DirtyBits.SetRange(_zero, first, last + 1, false);
        DirtyBits.SetRange(_pending, first, last + 1, true);
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken) => ZeroAsync(offset, length, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken) => ZeroAsync(offset, length, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        RandomAccess.FlushToDisk(_cache);
        return ValueTask.CompletedTask;
    }

    public IReadOnlyList<DeviceExtent> GetExtents(long offset, long length, int maxExtents)
    {
        var result = new List<DeviceExtent>();
        long end = offset + length;
        long block = offset >> _shift;
        while (offset < end && result.Count <= maxExtents)
        {
            (long run, BlockState state) = Run(block, ((end - 1) >> _shift) + 1);
            long runEnd = Math.Min(end, (block + run) << _shift);
            IReadOnlyList<DeviceExtent> parts = state == BlockState.Clean
                ? _device.GetExtents(offset, runEnd - offset, maxExtents)
                : [new DeviceExtent(runEnd - offset, state == BlockState.Zero ? ExtentKind.Zero : ExtentKind.Data)];
            foreach (DeviceExtent p in parts)
            {
                if (!DeviceExtent.TryAppend(result, p, maxExtents))
                {
                    return result;
                }
            }
            long covered = parts.Sum(p => p.Length);
            if (covered < runEnd - offset)
            {
                break; // the base hit maxExtents
            }
            offset = runEnd;
            block += run;
        }
        return result;
    }

    /// <summary>
    /// Publishes the dirty blocks as a new build over <see cref="Base"/> (generation + 1):
    /// written blocks are copied into its data file, zeroed ones become zero extents, and the
    /// rest of the mapping is the base's. Writers wait while it runs; the overlay keeps its
    /// state afterwards (still relative to its base).
    /// </summary>
    public async Task<BuildHeader> ExportAsync(LayerStore store, IProgress<long>? progress = null, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        using IDisposable all = await _writers.AcquireAsync(0, _blocks, cancellationToken);
        return await ExportCoreAsync(store, Guid.NewGuid(), Base.Header, _device.Header.Mapping, Size, pendingOnly: false, progress, cancellationToken);
    }

    /// <summary>
    /// <see cref="ExportAsync(LayerStore, IProgress{long}?, CancellationToken)"/> under a build id the
    /// caller chose, so it can record the id before the build exists (and reclaim it after a crash).
    /// </summary>
    public async Task<BuildHeader> ExportAsync(LayerStore store, Guid buildId, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        using IDisposable all = await _writers.AcquireAsync(0, _blocks, cancellationToken);
        return await ExportCoreAsync(store, buildId, Base.Header, _device.Header.Mapping, Size, pendingOnly: false, progress: null, cancellationToken);
    }

    /// <summary>
    /// Publishes the blocks written or zeroed since the previous call (or since the overlay was
    /// created) as a new build over <see cref="LastExport"/>, <paramref name="size"/> bytes long
    /// (at most the device's size; the device's size unless given): the layer of one build
    /// phase. Writers wait while it runs.
    /// </summary>
    public async Task<BuildHeader> ExportChangesAsync(LayerStore store, long? size = null, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        long length = size ?? Size;
        if (length <= 0 || length > Size || length % BlockSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(size), length, $"An export of an overlay of {Size} bytes must be a whole number of {BlockSize}-byte blocks, at most the device.");
        }
        using IDisposable all = await _writers.AcquireAsync(0, _blocks, cancellationToken);
        BuildHeader parent = LastExport;
        BuildHeader published = await ExportCoreAsync(
            store, Guid.NewGuid(), parent, Build.ResizeMapping(parent, length), length, pendingOnly: true, progress: null, cancellationToken);
        Array.Clear(_pending);
        _lastExport = published;
        return published;
    }

    /// <summary>Copies the blocks to export into a staged build over <paramref name="parent"/> and commits it (the caller holds every block's lock).</summary>
    private async Task<BuildHeader> ExportCoreAsync(
        LayerStore store, Guid id, BuildHeader parent, IReadOnlyList<BuildMappingEntry> parentMapping, long size, bool pendingOnly,
        IProgress<long>? progress, CancellationToken cancellationToken)
    {
        var overlay = new List<BuildMappingEntry>();
        long blocks = size >> _shift;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(CopyChunk);
        await using StagedBuild staged = await store.BeginAsync(id, cancellationToken);
        long copied = 0;
        try
        {
            for (long block = 0; block < blocks;)
            {
                (long run, BlockState state) = pendingOnly ? PendingRun(block, blocks) : Run(block, blocks);
                long start = block << _shift;
                long length = run << _shift;
                if (state == BlockState.Zero)
                {
                    BuildMapping.Append(overlay, BuildMappingEntry.Zero(start, length));
                }
                else if (state == BlockState.Data)
                {
                    BuildMapping.Append(overlay, new BuildMappingEntry(start, length, id, staged.Length));
                    for (long at = start; at < start + length; at += CopyChunk)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        int n = (int)Math.Min(CopyChunk, start + length - at);
                        ReadCache(at, buffer.AsSpan(0, n));
                        await staged.AppendAsync(buffer.AsMemory(0, n), cancellationToken);
                        copied += n;
                        progress?.Report(copied);
                    }
                }
                block += run;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        var header = new BuildHeader
        {
            BlockSize = BlockSize,
            Size = size,
            Generation = parent.Generation + 1,
            BuildId = id,
            BaseBuildId = parent.BuildId,
            DataLength = 0,
            DataSha256 = new byte[32],
            Mapping = BuildMapping.Merge(parentMapping, overlay),
        };
        BuildHeader published = await staged.CommitAsync(header, cancellationToken);
        store.MarkVerified(id);
        store.OnPublished(published);
        BlocksLog.OverlayExported(_logger, parent.BuildId, id, copied);
        return published;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _cache.Dispose();
        File.Delete(CachePath);
        if (!ReferenceEquals(_device, Base))
        {
            _device.Dispose(); // a view: closes nothing of the base's
        }
        if (_ownsBase)
        {
            Base.Dispose();
        }
    }

    private async ValueTask ZeroAsync(long offset, long length, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        if (length <= 0)
        {
            return;
        }
        long first = offset >> _shift;
        long last = (offset + length - 1) >> _shift;
        using IDisposable held = await _writers.AcquireAsync(first, last + 1, cancellationToken);
        // Whole blocks become zero extents; partial ones get zeros written into them.
        long fullFirst = (offset + BlockSize - 1) >> _shift;
        long fullEnd = (offset + length) >> _shift;
        if (fullFirst < fullEnd)
        {
            DirtyBits.SetRange(_zero, fullFirst, fullEnd, true);
            DirtyBits.SetRange(_data, fullFirst, fullEnd, false);
            DirtyBits.SetRange(_pending, fullFirst, fullEnd, true);
            UnixFile.TryPunchHole(_cache, fullFirst << _shift, (fullEnd - fullFirst) << _shift);
        }
        long end = offset + length;
        if (fullFirst > fullEnd)
        {
            await ZeroPartialAsync(offset, end, cancellationToken); // inside one block
        }
        else
        {
            await ZeroPartialAsync(offset, Math.Min(end, fullFirst << _shift), cancellationToken);
            await ZeroPartialAsync(Math.Max(offset, fullEnd << _shift), end, cancellationToken);
        }
    }

    /// <summary>Writes zeros into part of one block (the caller holds the range lock).</summary>
    private async ValueTask ZeroPartialAsync(long from, long to, CancellationToken cancellationToken)
    {
        if (from >= to)
        {
            return;
        }
        long b = from >> _shift;
        byte[] zeros = ArrayPool<byte>.Shared.Rent(BlockSize);
        try
        {
            Array.Clear(zeros, 0, BlockSize);
            await MergeWriteAsync(from, zeros.AsMemory(0, (int)(to - from)), b, b, cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeros);
        }
        DirtyBits.SetRange(_data, b, b + 1, true);
        DirtyBits.SetRange(_zero, b, b + 1, false);
        DirtyBits.SetRange(_pending, b, b + 1, true);
    }

    /// <summary>Writes <paramref name="source"/> into blocks first..last, filling partial blocks from their current content.</summary>
    private async ValueTask MergeWriteAsync(long offset, ReadOnlyMemory<byte> source, long first, long last, CancellationToken cancellationToken)
    {
        long alignedStart = first << _shift;
        int total = (int)(((last + 1) << _shift) - alignedStart);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            Memory<byte> whole = buffer.AsMemory(0, total);
            await ReadAsync(alignedStart, whole[..BlockSize], cancellationToken);
            if (last != first)
            {
                await ReadAsync((last << _shift), whole[(total - BlockSize)..], cancellationToken);
            }
            source.CopyTo(whole[(int)(offset - alignedStart)..]);
            RandomAccess.Write(_cache, whole.Span, alignedStart);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void ReadCache(long offset, Span<byte> destination)
    {
        if (PositionalRead.Fill(_cache, destination, offset) < destination.Length)
        {
            throw new IOException($"overlay cache {CachePath} is shorter than the device.");
        }
    }

    private enum BlockState
    {
        Clean,
        Data,
        Zero,
    }

    private BlockState StateOf(long block)
    {
        ulong bit = 1UL << (int)(block & 63);
        long word = block >> 6;
        if ((Volatile.Read(ref _data[word]) & bit) != 0)
        {
            return BlockState.Data;
        }
        return (Volatile.Read(ref _zero[word]) & bit) != 0 ? BlockState.Zero : BlockState.Clean;
    }

    /// <summary>The state of <paramref name="block"/> and how many blocks after it (before <paramref name="limit"/>) share it.</summary>
    private (long Run, BlockState State) Run(long block, long limit)
    {
        BlockState state = StateOf(block);
        long b = block + 1;
        while (b < limit)
        {
            if ((b & 63) == 0 && b + 64 <= limit)
            {
                // Whole words at a time for long clean (or long dirty) stretches.
                long w = b >> 6;
                ulong d = Volatile.Read(ref _data[w]);
                ulong z = Volatile.Read(ref _zero[w]);
                bool whole = state switch
                {
                    BlockState.Clean => (d | z) == 0,
                    BlockState.Data => d == ulong.MaxValue,
                    _ => z == ulong.MaxValue,
                };
                if (whole)
                {
                    b += 64;
                    continue;
                }
            }
            if (StateOf(b) != state)
            {
                break;
            }
            b++;
        }
        return (b - block, state);
    }

    /// <summary>Like <see cref="Run"/>, with the blocks not changed since the last <see cref="ExportChangesAsync"/> counted as clean.</summary>
    private (long Run, BlockState State) PendingRun(long block, long limit)
    {
        BlockState StateAt(long b) => (Volatile.Read(ref _pending[b >> 6]) & (1UL << (int)(b & 63))) != 0 ? StateOf(b) : BlockState.Clean;
        BlockState state = StateAt(block);
        long b = block + 1;
        while (b < limit)
        {
            if ((b & 63) == 0 && b + 64 <= limit && state == BlockState.Clean && Volatile.Read(ref _pending[b >> 6]) == 0)
            {
                b += 64; // untouched since the last export
                continue;
            }
            if (StateAt(b) != state)
            {
                break;
            }
            b++;
        }
        return (b - block, state);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed != 0, this);
}
