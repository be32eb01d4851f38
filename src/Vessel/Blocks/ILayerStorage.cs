namespace Vessel.Blocks;

/// <summary>
/// Where builds live: a header and a data file per build id. The local directory
/// (<see cref="LocalLayerStorage"/>) implements it now; an object store (which would keep
/// a local read cache) can implement it later. Publishing is atomic: a build is either
/// complete and listed, or absent.
/// </summary>
internal interface ILayerStorage
{
    /// <summary>Where the builds are, for messages.</summary>
    string Location { get; }

    Task<IReadOnlyList<Guid>> ListAsync(CancellationToken cancellationToken);

    /// <summary>The raw header bytes of a published build, or null when there is no such build.</summary>
    Task<byte[]?> TryReadHeaderAsync(Guid buildId, CancellationToken cancellationToken);

    /// <summary>Opens a published build's data file for positional reads.</summary>
    Task<ILayerData> OpenDataAsync(Guid buildId, CancellationToken cancellationToken);

    /// <summary>Starts staging a new build; nothing is visible until <see cref="ILayerUpload.CommitAsync"/>.</summary>
    Task<ILayerUpload> BeginUploadAsync(Guid buildId, CancellationToken cancellationToken);

    /// <summary>The raw verified stamp saved beside a build, or null when there is none (see <see cref="VerifiedStamp"/>).</summary>
    Task<byte[]?> TryReadStampAsync(Guid buildId, CancellationToken cancellationToken);

    /// <summary>Saves (replaces atomically) a build's verified stamp; false when the storage cannot keep one (read-only, full).</summary>
    Task<bool> TryWriteStampAsync(Guid buildId, ReadOnlyMemory<byte> stamp, CancellationToken cancellationToken);

    /// <summary>Removes a build's verified stamp, if any.</summary>
    Task DeleteStampAsync(Guid buildId, CancellationToken cancellationToken);

    /// <summary>Removes a build atomically (readers see it whole or not at all).</summary>
    Task DeleteAsync(Guid buildId, CancellationToken cancellationToken);
}

/// <summary>A build's data, read at any offset by many callers at once.</summary>
internal interface ILayerData : IDisposable
{
    long Length { get; }

    /// <summary>
    /// True when every read is checked against digests bound to the build's header (object
    /// storage's chunk index), so the whole-file hash on open is not needed.
    /// </summary>
    bool VerifiesReads => false;

    /// <summary>Fills <paramref name="destination"/> from <paramref name="offset"/>; the range must lie inside the data.</summary>
    ValueTask ReadAsync(Memory<byte> destination, long offset, CancellationToken cancellationToken);

    /// <summary>Like <see cref="ReadAsync"/>, but only if the range is cached locally; false means "use ReadAsync".</summary>
    bool TryReadCached(Span<byte> destination, long offset);

    /// <summary>Appends the data as a local file range when it is one and is wholly page-cached (see <see cref="IBlockDevice.TryGetCachedFileRanges"/>).</summary>
    bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges);

    /// <summary>The identity of the data as it is now, for verified stamps; null where storage cannot give one (then every open hashes).</summary>
    FileIdentity? GetIdentity();
}

/// <summary>A build being staged: data appended in order, then the header commits it.</summary>
internal interface ILayerUpload : IAsyncDisposable
{
    ValueTask AppendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

    /// <summary>Makes the build durable and visible in one atomic step. Disposing without commit discards it.</summary>
    Task CommitAsync(ReadOnlyMemory<byte> header, CancellationToken cancellationToken);
}
