using System.Buffers;
using Vessel.Blocks;

namespace Vessel.Templates;

/// <summary>
/// A writable disk over a published build, for one run of build phases: a copy-on-write
/// <see cref="OverlayDevice"/> with this session's own dirty tracking on top, so that each
/// <see cref="ExportAsync"/> stores only the blocks written since the previous export (one
/// layer per phase) and can give the new layer a different device size than its parent
/// (build-from-template resize). Full blocks of zeros are recorded as zero extents, not
/// stored. The session owns the overlay, its cache file and the parent's open data files.
/// </summary>
internal sealed class LayerSession : IBlockDevice, IDisposable
{
    private const int CopyChunk = 1 << 20;
    private readonly LayerStore _store;
    private readonly OverlayDevice _overlay;
    private readonly ulong[] _dirty;
    private readonly ulong[] _zeroed;
    private readonly int _shift;
    private BuildHeader _last;
    private bool _disposed;

    private LayerSession(LayerStore store, BuildHeader parent, OverlayDevice overlay, long targetSize)
    {
        _store = store;
        _overlay = overlay;
        _last = parent;
        TargetSize = targetSize;
        _shift = System.Numerics.BitOperations.Log2((uint)overlay.BlockSize);
        long blocks = overlay.Size >> _shift;
        _dirty = new ulong[(blocks + 63) / 64];
        _zeroed = new ulong[(blocks + 63) / 64];
    }

    /// <summary>The device size that exported layers get (the device itself is at least this big).</summary>
    public long TargetSize { get; }

    /// <summary>The last published build this session's content is relative to.</summary>
    public BuildHeader Current => _last;

    public long Size => _overlay.Size;

    public int BlockSize => _overlay.BlockSize;

    public bool IsReadOnly => false;

    /// <summary>Whether anything was written or zeroed since the last export.</summary>
    public bool HasPendingChanges => _dirty.Any(w => w != 0) || _zeroed.Any(w => w != 0);

    /// <summary>Bytes written (not zeroed) since the last export.</summary>
    public long PendingDataBytes => DirtyBits.CountBits(_dirty) << _shift;

    /// <summary>
    /// Opens a session over build <paramref name="parentId"/>. With a <paramref name="targetSize"/>
    /// other than the parent's, the device is max(parent, target) bytes (the part past the
    /// parent reads as zeros) so that a filesystem can be grown into it or shrunk out of it;
    /// exports keep only the first <paramref name="targetSize"/> bytes.
    /// </summary>
    public static async Task<LayerSession> OpenAsync(LayerStore store, Guid parentId, long? targetSize, string workDirectory, CancellationToken cancellationToken)
    {
        BuildHeader parent = await store.ReadHeaderAsync(parentId, cancellationToken);
        long target = targetSize ?? parent.Size;
        if (target <= 0 || target % parent.BlockSize != 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"a layer size of {target} bytes is not a multiple of the {parent.BlockSize}-byte block size.");
        }
        long deviceSize = Math.Max(target, parent.Size);
        Build build;
        if (deviceSize == parent.Size)
        {
            build = await store.OpenAsync(parentId, cancellationToken);
        }
        else
        {
            // Verify the parent's data once through the store, then open a view whose mapping
            // runs past the parent's end as zeros.
            using (await store.OpenAsync(parentId, cancellationToken))
            {
            }
            var mapping = new List<BuildMappingEntry>(parent.Mapping);
            BuildMapping.Append(mapping, BuildMappingEntry.Zero(parent.Size, deviceSize - parent.Size));
            var data = new Dictionary<Guid, ILayerData>();
            try
            {
                foreach (Guid owner in parent.ReferencedBuilds)
                {
                    data.Add(owner, await store.Storage.OpenDataAsync(owner, cancellationToken));
                }
            }
            catch
            {
                foreach (ILayerData d in data.Values)
                {
                    d.Dispose();
                }
                throw;
            }
            build = new Build(parent with { Size = deviceSize, Mapping = mapping }, data);
        }
        try
        {
            OverlayDevice overlay = OverlayDevice.Create(build, workDirectory, ownsBase: true);
            return new LayerSession(store, parent, overlay, target);
        }
        catch
        {
            build.Dispose();
            throw;
        }
    }

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken) => _overlay.ReadAsync(offset, destination, cancellationToken);

    public bool TryReadCached(long offset, Span<byte> destination) => _overlay.TryReadCached(offset, destination);

    public bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges) => _overlay.TryGetCachedFileRanges(offset, length, ranges);

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken)
    {
        long first = offset >> _shift;
        long end = (offset + source.Length + BlockSize - 1) >> _shift;
        if (((offset | (long)source.Length) & (BlockSize - 1)) == 0 && !source.Span.ContainsAnyExcept((byte)0))
        {
            // resize2fs and mke2fs write whole tables of zeros: keep them as zero extents.
            await _overlay.WriteZeroesAsync(offset, source.Length, cancellationToken);
            Mark(first, end, zero: true);
            return;
        }
        await _overlay.WriteAsync(offset, source, cancellationToken);
        Mark(first, end, zero: false);
    }

    public async ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
    {
        await _overlay.TrimAsync(offset, length, cancellationToken);
        MarkZeroRange(offset, length);
    }

    public async ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken)
    {
        await _overlay.WriteZeroesAsync(offset, length, cancellationToken);
        MarkZeroRange(offset, length);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken) => _overlay.FlushAsync(cancellationToken);

    public IReadOnlyList<DeviceExtent> GetExtents(long offset, long length, int maxExtents) => _overlay.GetExtents(offset, length, maxExtents);

    /// <summary>
    /// Publishes the blocks written since the previous export (or since the session began) as
    /// a new build over the previous one, <see cref="TargetSize"/> bytes long. Callers must
    /// not write while it runs (the phase that wrote has ended).
    /// </summary>
    public async Task<BuildHeader> ExportAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var id = Guid.NewGuid();
        var overlay = new List<BuildMappingEntry>();
        long blocks = TargetSize >> _shift;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(CopyChunk);
        await using StagedBuild staged = await _store.BeginAsync(id, cancellationToken);
        try
        {
            for (long b = 0; b < blocks;)
            {
                (long run, int state) = Run(b, blocks);
                long start = b << _shift;
                long length = run << _shift;
                if (state == 2)
                {
                    BuildMapping.Append(overlay, BuildMappingEntry.Zero(start, length));
                }
                else if (state == 1)
                {
                    BuildMapping.Append(overlay, new BuildMappingEntry(start, length, id, staged.Length));
                    for (long at = start; at < start + length; at += CopyChunk)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        int n = (int)Math.Min(CopyChunk, start + length - at);
                        await _overlay.ReadAsync(at, buffer.AsMemory(0, n), cancellationToken);
                        await staged.AppendAsync(buffer.AsMemory(0, n), cancellationToken);
                    }
                }
                b += run;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        var baseMapping = new List<BuildMappingEntry>();
        BuildMapping.CopyRange(_last.Mapping, 0, Math.Min(TargetSize, _last.Size), baseMapping);
        if (TargetSize > _last.Size)
        {
            BuildMapping.Append(baseMapping, BuildMappingEntry.Zero(_last.Size, TargetSize - _last.Size));
        }
        var header = new BuildHeader
        {
            BlockSize = BlockSize,
            Size = TargetSize,
            Generation = _last.Generation + 1,
            BuildId = id,
            BaseBuildId = _last.BuildId,
            DataLength = 0,
            DataSha256 = new byte[32],
            Mapping = BuildMapping.Merge(baseMapping, overlay),
        };
        BuildHeader published = await staged.CommitAsync(header, cancellationToken);
        _store.MarkVerified(id);
        _store.OnPublished(published);
        Array.Clear(_dirty);
        Array.Clear(_zeroed);
        _last = published;
        return published;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _overlay.Dispose();
    }

    private void MarkZeroRange(long offset, long length)
    {
        // Whole blocks become zero; partial ones were written (with zeros) by the overlay.
        long fullFirst = (offset + BlockSize - 1) >> _shift;
        long fullEnd = (offset + length) >> _shift;
        if (fullFirst < fullEnd)
        {
            Mark(fullFirst, fullEnd, zero: true);
        }
        long first = offset >> _shift;
        long last = (offset + length - 1) >> _shift;
        if (first < fullFirst)
        {
            Mark(first, first + 1, zero: false);
        }
        if (last >= fullEnd && last >= fullFirst)
        {
            Mark(last, last + 1, zero: false);
        }
    }

    private void Mark(long start, long end, bool zero)
    {
        DirtyBits.SetRange(zero ? _zeroed : _dirty, start, end, true);
        DirtyBits.SetRange(zero ? _dirty : _zeroed, start, end, false);
    }

    /// <summary>State of a block since the last export: 0 untouched, 1 data, 2 zero; and how many following blocks share it.</summary>
    private (long Run, int State) Run(long block, long limit)
    {
        int state = StateOf(block);
        long b = block + 1;
        while (b < limit)
        {
            if ((b & 63) == 0 && b + 64 <= limit && state == 0 && (_dirty[b >> 6] | _zeroed[b >> 6]) == 0)
            {
                b += 64;
                continue;
            }
            if (StateOf(b) != state)
            {
                break;
            }
            b++;
        }
        return (b - block, state);
    }

    private int StateOf(long block)
    {
        ulong bit = 1UL << (int)(block & 63);
        long word = block >> 6;
        return (Volatile.Read(ref _dirty[word]) & bit) != 0 ? 1 : (Volatile.Read(ref _zeroed[word]) & bit) != 0 ? 2 : 0;
    }
}
