namespace Vessel.Blocks;

/// <summary>
/// A published build opened for reading: its header and the data files of every build its
/// mapping points into. A read finds its extent by binary search and reads the owning
/// build's data directly, so a build 16 layers deep reads as fast as a base build.
/// Read-only; <see cref="OverlayDevice"/> adds writes on top. Disposing closes the files.
/// </summary>
internal sealed class Build : ReadOnlyBlockDevice, IBlockDevice, IDisposable
{
    private readonly BuildMappingEntry[] _mapping;
    private readonly ILayerData?[] _sources; // per mapping entry; null for zero extents
    private readonly IReadOnlyDictionary<Guid, ILayerData> _data;
    private readonly IReadOnlyList<ILayerData> _owned;

    internal Build(BuildHeader header, IReadOnlyDictionary<Guid, ILayerData> data)
        : this(header, data, ownsData: true)
    {
    }

    private Build(BuildHeader header, IReadOnlyDictionary<Guid, ILayerData> data, bool ownsData)
    {
        Header = header;
        _mapping = [.. header.Mapping];
        _sources = new ILayerData?[_mapping.Length];
        for (int i = 0; i < _mapping.Length; i++)
        {
            _sources[i] = _mapping[i].IsZero ? null : data[_mapping[i].BuildId];
        }
        _data = data;
        _owned = ownsData ? [.. data.Values] : [];
    }

    public BuildHeader Header { get; }

    /// <summary>
    /// This build seen <paramref name="size"/> bytes long: cut short, or reading as zeros past
    /// its end (a filesystem grown into a larger device). The view shares this build's open
    /// files, which stay this build's to close: dispose the view first or not at all.
    /// </summary>
    public Build Resize(long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        if (size % BlockSize != 0)
        {
            throw new ArgumentException($"A device of {size} bytes is not a whole number of {BlockSize}-byte blocks.", nameof(size));
        }
        return new Build(Header with { Size = size, Mapping = ResizeMapping(Header, size) }, _data, ownsData: false);
    }

    /// <summary><paramref name="header"/>'s mapping cut or zero-extended to <paramref name="size"/> bytes.</summary>
    public static List<BuildMappingEntry> ResizeMapping(BuildHeader header, long size)
    {
        var mapping = new List<BuildMappingEntry>();
        BuildMapping.CopyRange(header.Mapping, 0, Math.Min(size, header.Size), mapping);
        if (size > header.Size)
        {
            BuildMapping.Append(mapping, BuildMappingEntry.Zero(header.Size, size - header.Size));
        }
        return mapping;
    }

    public Guid Id => Header.BuildId;

    public long Size => Header.Size;

    public int BlockSize => Header.BlockSize;

    public bool IsReadOnly => true;

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        int i = BuildMapping.Find(_mapping, offset);
        while (destination.Length > 0)
        {
            BuildMappingEntry e = _mapping[i];
            int n = (int)Math.Min(destination.Length, e.End - offset);
            Memory<byte> part = destination[..n];
            ILayerData? source = _sources[i];
            if (source is null)
            {
                part.Span.Clear();
            }
            else
            {
                await source.ReadAsync(part, e.StorageOffset + (offset - e.Offset), cancellationToken);
            }
            destination = destination[n..];
            offset += n;
            i++;
        }
    }

    public bool TryReadCached(long offset, Span<byte> destination)
    {
        int i = BuildMapping.Find(_mapping, offset);
        while (destination.Length > 0)
        {
            BuildMappingEntry e = _mapping[i];
            int n = (int)Math.Min(destination.Length, e.End - offset);
            Span<byte> part = destination[..n];
            ILayerData? source = _sources[i];
            if (source is null)
            {
                part.Clear();
            }
            else if (!source.TryReadCached(part, e.StorageOffset + (offset - e.Offset)))
            {
                return false;
            }
            destination = destination[n..];
            offset += n;
            i++;
        }
        return true;
    }

    public bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges)
    {
        int i = BuildMapping.Find(_mapping, offset);
        while (length > 0)
        {
            BuildMappingEntry e = _mapping[i];
            int n = (int)Math.Min(length, e.End - offset);
            ILayerData? source = _sources[i];
            if (source is null)
            {
                ranges.Add(new FileRange(null, 0, n));
            }
            else if (!source.TryGetCachedFileRanges(e.StorageOffset + (offset - e.Offset), n, ranges))
            {
                return false;
            }
            length -= n;
            offset += n;
            i++;
        }
        return true;
    }

    public IReadOnlyList<DeviceExtent> GetExtents(long offset, long length, int maxExtents)
    {
        var result = new List<DeviceExtent>();
        long end = offset + length;
        for (int i = BuildMapping.Find(_mapping, offset); i < _mapping.Length && offset < end; i++)
        {
            BuildMappingEntry e = _mapping[i];
            long n = Math.Min(end, e.End) - offset;
            if (!DeviceExtent.TryAppend(result, new DeviceExtent(n, e.IsZero ? ExtentKind.Zero : ExtentKind.Data), maxExtents))
            {
                break;
            }
            offset += n;
        }
        return result;
    }

    public void Dispose()
    {
        foreach (ILayerData d in _owned)
        {
            d.Dispose();
        }
    }

    protected override VesselException ReadOnlyError() => new(VesselErrorReason.InvalidInput, $"build {Id} is read-only; write through an overlay.");
}
