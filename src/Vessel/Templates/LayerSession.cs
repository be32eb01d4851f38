using Vessel.Blocks;

namespace Vessel.Templates;

/// <summary>
/// A writable disk over a published build, for one run of build phases: a copy-on-write
/// <see cref="OverlayDevice"/> whose <see cref="OverlayDevice.ExportChangesAsync"/> stores only
/// the blocks written since the previous export (one layer per phase) and can give the new
/// layer a different device size than its parent (build-from-template resize, with the
/// overlay's resize). Full blocks of zeros are recorded as zero extents, not stored. The
/// session owns the overlay, its cache file and the parent's open data files.
/// </summary>
internal sealed class LayerSession : IBlockDevice, IDisposable
{
    private readonly LayerStore _store;
    private readonly OverlayDevice _overlay;
    private bool _disposed;

    private LayerSession(LayerStore store, OverlayDevice overlay, long targetSize)
    {
        _store = store;
        _overlay = overlay;
        TargetSize = targetSize;
    }

    /// <summary>The device size that exported layers get (the device itself is at least this big).</summary>
    public long TargetSize { get; }

    /// <summary>The last published build this session's content is relative to.</summary>
    public BuildHeader Current => _overlay.LastExport;

    public long Size => _overlay.Size;

    public int BlockSize => _overlay.BlockSize;

    public bool IsReadOnly => false;

    /// <summary>Whether anything was written or zeroed since the last export.</summary>
    public bool HasPendingChanges => _overlay.HasPendingChanges;

    /// <summary>Bytes written (not zeroed) since the last export.</summary>
    public long PendingDataBytes => _overlay.PendingDataBytes;

    /// <summary>
    /// Opens a session over build <paramref name="parentId"/>. With a <paramref name="targetSize"/>
    /// other than the parent's, the device is max(parent, target) bytes (the part past the
    /// parent reads as zeros) so that a filesystem can be grown into it or shrunk out of it;
    /// exports keep only the first <paramref name="targetSize"/> bytes.
    /// </summary>
    public static async Task<LayerSession> OpenAsync(LayerStore store, Guid parentId, long? targetSize, string workDirectory, CancellationToken cancellationToken)
    {
        Build build = await store.OpenAsync(parentId, cancellationToken);
        try
        {
            long target = targetSize ?? build.Size;
            if (target <= 0 || target % build.BlockSize != 0)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"a layer size of {target} bytes is not a multiple of the {build.BlockSize}-byte block size.");
            }
            OverlayDevice overlay = OverlayDevice.Create(build, workDirectory, ownsBase: true, size: Math.Max(target, build.Size));
            return new LayerSession(store, overlay, target);
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

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken)
    {
        if (((offset | (long)source.Length) & (BlockSize - 1)) == 0 && !source.Span.ContainsAnyExcept((byte)0))
        {
            // resize2fs and mke2fs write whole tables of zeros: keep them as zero extents.
            return _overlay.WriteZeroesAsync(offset, source.Length, cancellationToken);
        }
        return _overlay.WriteAsync(offset, source, cancellationToken);
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken) => _overlay.TrimAsync(offset, length, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken) => _overlay.WriteZeroesAsync(offset, length, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken) => _overlay.FlushAsync(cancellationToken);

    public IReadOnlyList<DeviceExtent> GetExtents(long offset, long length, int maxExtents) => _overlay.GetExtents(offset, length, maxExtents);

    /// <summary>
    /// Publishes the blocks written since the previous export (or since the session began) as
    /// a new build over the previous one, <see cref="TargetSize"/> bytes long. Callers must
    /// not write while it runs (the phase that wrote has ended).
    /// </summary>
    public Task<BuildHeader> ExportAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _overlay.ExportChangesAsync(_store, TargetSize, cancellationToken);
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
}
