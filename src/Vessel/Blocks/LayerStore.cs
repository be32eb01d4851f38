using System.Buffers;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;
using Vessel.Common;

namespace Vessel.Blocks;

/// <summary>
/// The layered block store: imports flat images as base builds (zero blocks detected, not
/// stored), opens builds for reading (verifying the SHA-256 of every data file they use),
/// and flattens a build into one sparse file. Overlays (<see cref="OverlayDevice"/>) export
/// their writes back into it as new builds.
/// </summary>
internal sealed class LayerStore
{
    private const int CopyChunk = 1 << 20;

    // A stamp is written only for a data file whose change time is at least this much older than
    // the hash: file timestamps advance in coarse ticks (milliseconds), so a write landing in the
    // same tick as the last one could leave ctime unchanged; once ctime is older than any tick,
    // every later write moves it. (Git's "racy clean" rule, with a wide margin.)
    private static readonly TimeSpan StampSettleTime = TimeSpan.FromSeconds(2);
    private readonly ConcurrentDictionary<Guid, bool> _verified = new();
    private readonly ILogger _logger;
    private readonly TimeProvider _time;

    public LayerStore(ILayerStorage storage, ILogger<LayerStore>? logger = null, TimeProvider? time = null)
    {
        Storage = storage;
        _logger = logger ?? (ILogger)NullLogger.Instance;
        _time = time ?? TimeProvider.System;
    }

    public ILayerStorage Storage { get; }

    /// <summary>The store in a local directory (created when missing).</summary>
    public static LayerStore OpenDirectory(string path, ILogger<LayerStore>? logger = null) => new(new LocalLayerStorage(path), logger);

    /// <summary>
    /// A home's store: its blocks directory, with the bucket of <see cref="VesselSettings.RemoteStore"/>
    /// behind it when one is set (<see cref="TieredLayerStorage"/>).
    /// </summary>
    public static LayerStore OpenHome(VesselHome home, VesselSettings settings, ILogger<LayerStore>? logger = null)
        => settings.RemoteStore is { } remote
            ? new(new TieredLayerStorage(new LocalLayerStorage(home.Blocks), new S3LayerStorage(settings.S3Store(remote, home))), logger)
            : OpenDirectory(home.Blocks, logger);

    /// <summary>The store in an S3-compatible bucket, fetched chunk by chunk into a local cache.</summary>
    public static LayerStore OpenS3(S3StoreOptions options, ILogger<LayerStore>? logger = null) => new(new S3LayerStorage(options), logger);

    public async Task<IReadOnlyList<BuildHeader>> ListAsync(CancellationToken cancellationToken)
    {
        var headers = new List<BuildHeader>();
        foreach (Guid id in await Storage.ListAsync(cancellationToken))
        {
            headers.Add(await ReadHeaderAsync(id, cancellationToken));
        }
        return headers;
    }

    public async Task<BuildHeader> ReadHeaderAsync(Guid buildId, CancellationToken cancellationToken)
    {
        byte[] bytes = await Storage.TryReadHeaderAsync(buildId, cancellationToken)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"build {buildId} is not in the store at {Storage.Location}.");
        BuildHeader header = BuildHeader.Read(bytes, $"build {buildId}");
        if (header.BuildId != buildId)
        {
            throw new InvalidDataException($"build {buildId}: its header names build {header.BuildId}.");
        }
        return header;
    }

    /// <summary>Finds a build by its full id or a unique prefix of it.</summary>
    public async Task<Guid> ResolveAsync(string idOrPrefix, CancellationToken cancellationToken)
    {
        if (Guid.TryParse(idOrPrefix, out Guid exact))
        {
            return exact;
        }
        string prefix = idOrPrefix.Trim().ToLowerInvariant();
        var matches = (await Storage.ListAsync(cancellationToken)).Where(g => g.ToString("D").StartsWith(prefix, StringComparison.Ordinal)).ToList();
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw new VesselException(VesselErrorReason.NotFound, $"no build id starts with '{idOrPrefix}' in {Storage.Location} (see 'vessel blocks list')."),
            _ => throw new VesselException(VesselErrorReason.InvalidInput, $"'{idOrPrefix}' matches {matches.Count} builds; give more of the id."),
        };
    }

    /// <summary>
    /// Opens a build with the data of every build its mapping uses. The first open of each data
    /// file in this store instance checks its length and SHA-256 against its build's header,
    /// unless a verified stamp saved by an earlier hash vouches for the file as it is now.
    /// </summary>
    public Task<Build> OpenAsync(Guid buildId, CancellationToken cancellationToken) => OpenAsync(buildId, trustStamps: true, cancellationToken);

    private async Task<Build> OpenAsync(Guid buildId, bool trustStamps, CancellationToken cancellationToken)
    {
        BuildHeader header = await ReadHeaderAsync(buildId, cancellationToken);
        var data = new Dictionary<Guid, ILayerData>();
        try
        {
            foreach (Guid owner in header.ReferencedBuilds)
            {
                BuildHeader ownerHeader = owner == buildId ? header : await ReadHeaderAsync(owner, cancellationToken);
                if (ownerHeader.BlockSize != header.BlockSize)
                {
                    throw new InvalidDataException($"build {buildId}: ancestor {owner} has block size {ownerHeader.BlockSize}, not {header.BlockSize}.");
                }
                ILayerData d = await Storage.OpenDataAsync(owner, cancellationToken);
                data.Add(owner, d);
                await VerifyDataAsync(ownerHeader, d, trustStamps, cancellationToken);
            }
            foreach (BuildMappingEntry e in header.Mapping)
            {
                if (!e.IsZero && e.StorageOffset + e.Length > data[e.BuildId].Length)
                {
                    throw new InvalidDataException($"build {buildId}: extent at {e.Offset} points past the end of build {e.BuildId}'s data.");
                }
            }
            return new Build(header, data);
        }
        catch
        {
            foreach (ILayerData d in data.Values)
            {
                d.Dispose();
            }
            throw;
        }
    }

    /// <summary>
    /// Reads every data file a build uses and checks it against its header, even if checked
    /// before and whatever the stamps say: this is the check that also catches damage below the
    /// filesystem (media errors), which leaves a file's identity unchanged.
    /// </summary>
    public async Task VerifyAsync(Guid buildId, CancellationToken cancellationToken)
    {
        BuildHeader header = await ReadHeaderAsync(buildId, cancellationToken);
        foreach (Guid owner in header.ReferencedBuilds)
        {
            _verified.TryRemove(owner, out _);
        }
        using Build build = await OpenAsync(buildId, trustStamps: false, cancellationToken);
    }

    /// <summary>
    /// Imports a flat image as a new base build (generation 0). Blocks that are all zeros (or
    /// holes of a sparse file) become zero extents and take no space.
    /// </summary>
    public async Task<BuildHeader> ImportAsync(string imagePath, int blockSize = BuildHeader.DefaultBlockSize, IProgress<long>? progress = null, CancellationToken cancellationToken = default)
    {
        using SafeFileHandle image = OpenImage(imagePath);
        long size = RandomAccess.GetLength(image);
        if (size == 0 || size % blockSize != 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"'{imagePath}' is {size} bytes, not a positive multiple of the {blockSize}-byte block size; pad it (truncate -s) or pick another --block-size.");
        }
        var id = Guid.NewGuid();
        var mapping = new List<BuildMappingEntry>();
        byte[] buffer = ArrayPool<byte>.Shared.Rent(CopyChunk);
        await using StagedBuild staged = await BeginAsync(id, cancellationToken);
        try
        {
            long pos = 0;
            while (pos < size)
            {
                cancellationToken.ThrowIfCancellationRequested();
                long data = LinuxFile.NextData(image, pos);
                if (data < 0 || data >= size)
                {
                    BuildMapping.Append(mapping, BuildMappingEntry.Zero(pos, size - pos));
                    break;
                }
                data -= data % blockSize;
                if (data > pos)
                {
                    BuildMapping.Append(mapping, BuildMappingEntry.Zero(pos, data - pos));
                    pos = data;
                }
                int n = (int)Math.Min(CopyChunk, size - pos);
                await ReadExactlyAsync(image, buffer.AsMemory(0, n), pos, cancellationToken);
                // Pack the non-zero blocks of this chunk; runs of them go out in one append.
                int runStart = -1;
                for (int b = 0; b <= n; b += blockSize)
                {
                    bool isData = b < n && buffer.AsSpan(b, blockSize).ContainsAnyExcept((byte)0);
                    if (isData && runStart < 0)
                    {
                        runStart = b;
                    }
                    else if (!isData && runStart >= 0)
                    {
                        BuildMapping.Append(mapping, new BuildMappingEntry(pos + runStart, b - runStart, id, staged.Length));
                        await staged.AppendAsync(buffer.AsMemory(runStart, b - runStart), cancellationToken);
                        runStart = -1;
                    }
                    if (!isData && b < n)
                    {
                        BuildMapping.Append(mapping, BuildMappingEntry.Zero(pos + b, blockSize));
                    }
                }
                pos += n;
                progress?.Report(pos);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        var header = new BuildHeader
        {
            BlockSize = blockSize,
            Size = size,
            Generation = 0,
            BuildId = id,
            BaseBuildId = Guid.Empty,
            DataLength = 0,
            DataSha256 = new byte[32],
            Mapping = mapping,
        };
        BuildHeader published = await staged.CommitAsync(header, cancellationToken);
        _verified[id] = true; // we just hashed what we wrote
        BlocksLog.BuildPublished(_logger, id, published.Generation, published.DataLength);
        return published;
    }

    /// <summary>Writes a build as one flat sparse file: zero extents stay holes. Atomic: a temp name, then rename.</summary>
    public async Task FlattenAsync(Guid buildId, string destination, IProgress<long>? progress = null, CancellationToken cancellationToken = default)
    {
        using OutputFile target = OutputFile.Begin(destination);
        using Build build = await OpenAsync(buildId, cancellationToken);
        string temp = target.PartialPath;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(CopyChunk);
        try
        {
            using (SafeFileHandle output = File.OpenHandle(temp, FileMode.CreateNew, FileAccess.ReadWrite))
            {
                RandomAccess.SetLength(output, build.Size);
                long done = 0;
                foreach (BuildMappingEntry e in build.Header.Mapping)
                {
                    if (!e.IsZero)
                    {
                        for (long at = e.Offset; at < e.End; at += CopyChunk)
                        {
                            cancellationToken.ThrowIfCancellationRequested();
                            int n = (int)Math.Min(CopyChunk, e.End - at);
                            await build.ReadAsync(at, buffer.AsMemory(0, n), cancellationToken);
                            await RandomAccess.WriteAsync(output, buffer.AsMemory(0, n), at, cancellationToken);
                            progress?.Report(done + (at + n - e.Offset));
                        }
                    }
                    done += e.Length;
                    progress?.Report(done);
                }
                RandomAccess.FlushToDisk(output);
            }
            target.Commit();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Deletes a build that no other build in the store uses.</summary>
    public async Task DeleteAsync(Guid buildId, CancellationToken cancellationToken)
    {
        foreach (BuildHeader other in await ListAsync(cancellationToken))
        {
            if (other.BuildId != buildId && other.ReferencedBuilds.Contains(buildId))
            {
                throw new VesselException(VesselErrorReason.Conflict, $"build {buildId} holds data that build {other.BuildId} uses; delete that one first.");
            }
        }
        await Storage.DeleteAsync(buildId, cancellationToken);
        _verified.TryRemove(buildId, out _);
    }

    internal async Task<StagedBuild> BeginAsync(Guid buildId, CancellationToken cancellationToken)
        => new(buildId, await Storage.BeginUploadAsync(buildId, cancellationToken));

    internal void MarkVerified(Guid buildId) => _verified[buildId] = true;

    internal void OnPublished(BuildHeader header) => BlocksLog.BuildPublished(_logger, header.BuildId, header.Generation, header.DataLength);

    private async Task VerifyDataAsync(BuildHeader header, ILayerData data, bool trustStamps, CancellationToken cancellationToken)
    {
        if (data.Length != header.DataLength)
        {
            throw new VesselException(VesselErrorReason.Corrupt,
                $"build {header.BuildId}: data file is {data.Length} bytes, its header says {header.DataLength}; the store at {Storage.Location} is damaged.");
        }
        if (_verified.ContainsKey(header.BuildId) || (trustStamps && data.VerifiesReads))
        {
            return;
        }
        FileIdentity? before = data.GetIdentity();
        if (trustStamps && before is { } current
            && await Storage.TryReadStampAsync(header.BuildId, cancellationToken) is { } raw
            && VerifiedStamp.TryRead(raw) is { } stamp
            && stamp.Vouches(header.BuildId, header.DataSha256, current))
        {
            _verified[header.BuildId] = true;
            BlocksLog.BuildVerifiedByStamp(_logger, header.BuildId);
            return;
        }
        DateTimeOffset hashStarted = _time.GetUtcNow();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(CopyChunk);
        try
        {
            for (long at = 0; at < data.Length; at += CopyChunk)
            {
                int n = (int)Math.Min(CopyChunk, data.Length - at);
                await data.ReadAsync(buffer.AsMemory(0, n), at, cancellationToken);
                hash.AppendData(buffer, 0, n);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        if (!hash.GetHashAndReset().AsSpan().SequenceEqual(header.DataSha256))
        {
            await Storage.DeleteStampAsync(header.BuildId, cancellationToken); // no stale stamp may vouch for it again
            throw new VesselException(VesselErrorReason.Corrupt,
                $"build {header.BuildId}: data file does not match its SHA-256; the store at {Storage.Location} is damaged.");
        }
        _verified[header.BuildId] = true;
        BlocksLog.BuildVerified(_logger, header.BuildId, header.DataLength);
        // Persist the result only for a file that did not change while it was hashed and that
        // no later write can change without moving its ctime (see StampSettleTime).
        if (before is { } b && data.GetIdentity() == b && b.Ctime <= hashStarted - StampSettleTime)
        {
            byte[] bytes = new byte[VerifiedStamp.Size];
            new VerifiedStamp(header.BuildId, header.DataSha256, b).Write(bytes);
            if (!await Storage.TryWriteStampAsync(header.BuildId, bytes, cancellationToken))
            {
                BlocksLog.StampNotSaved(_logger, header.BuildId);
            }
        }
    }

    private static SafeFileHandle OpenImage(string path)
    {
        return File.OpenHandle(InputFile.Require(path, "image"), FileMode.Open, FileAccess.Read);
    }

    internal static async ValueTask ReadExactlyAsync(SafeFileHandle handle, Memory<byte> buffer, long offset, CancellationToken cancellationToken)
    {
        while (buffer.Length > 0)
        {
            int n = await RandomAccess.ReadAsync(handle, buffer, offset, cancellationToken);
            if (n == 0)
            {
                throw new EndOfStreamException($"File ended at {offset} while reading.");
            }
            buffer = buffer[n..];
            offset += n;
        }
    }
}
