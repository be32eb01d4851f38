using System.Buffers;
using System.Security.Cryptography;

namespace Vessel.Blocks;

/// <summary>
/// Copies a build and every build its mapping uses from one store to another (a local
/// directory to a bucket and back), keeping ids, so a template's chain can be pushed and
/// pulled. Builds the target has already are skipped; each data file is hashed on the way and
/// must match its header before the copy is published.
/// </summary>
internal static class LayerCopy
{
    private const int CopyChunk = 1 << 20;

    /// <summary>What a copy moved.</summary>
    public readonly record struct Result(int Builds, int Skipped, long Bytes);

    public static async Task<Result> CopyAsync(LayerStore from, LayerStore to, Guid buildId, IProgress<long>? progress, CancellationToken cancellationToken)
    {
        BuildHeader top = await from.ReadHeaderAsync(buildId, cancellationToken);
        var present = (await to.Storage.ListAsync(cancellationToken)).ToHashSet();
        int copied = 0, skipped = 0;
        long bytes = 0;
        // Parents before children, so a build is never listed before the data it reads.
        foreach (Guid id in top.ReferencedBuilds.Where(g => g != buildId).Append(buildId))
        {
            if (present.Contains(id))
            {
                skipped++;
                continue;
            }
            bytes += await CopyOneAsync(from, to, id, progress, bytes, cancellationToken);
            copied++;
        }
        return new Result(copied, skipped, bytes);
    }

    private static async Task<long> CopyOneAsync(LayerStore from, LayerStore to, Guid id, IProgress<long>? progress, long done, CancellationToken cancellationToken)
    {
        byte[] rawHeader = await from.Storage.TryReadHeaderAsync(id, cancellationToken)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"build {id} is not in {from.Storage.Location}.");
        BuildHeader header = BuildHeader.Read(rawHeader, $"build {id}");
        using ILayerData data = await from.Storage.OpenDataAsync(id, cancellationToken);
        if (data.Length != header.DataLength)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"build {id}: data is {data.Length} bytes, its header says {header.DataLength}; {from.Storage.Location} is damaged.");
        }
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(CopyChunk);
        await using ILayerUpload upload = await to.Storage.BeginUploadAsync(id, cancellationToken);
        try
        {
            for (long at = 0; at < data.Length; at += CopyChunk)
            {
                int n = (int)Math.Min(CopyChunk, data.Length - at);
                await data.ReadAsync(buffer.AsMemory(0, n), at, cancellationToken);
                hash.AppendData(buffer, 0, n);
                await upload.AppendAsync(buffer.AsMemory(0, n), cancellationToken);
                progress?.Report(done + at + n);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        if (!hash.GetHashAndReset().AsSpan().SequenceEqual(header.DataSha256))
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"build {id}: data in {from.Storage.Location} does not match its SHA-256; not copied.");
        }
        await upload.CommitAsync(rawHeader, cancellationToken);
        to.MarkVerified(id);
        return data.Length;
    }
}
