using System.Buffers;
using Microsoft.Win32.SafeHandles;

namespace Vessel.Blocks;

/// <summary>Turns a changed flat copy of a build back into a layer on top of it.</summary>
internal static class BlockDiff
{
    private const int Chunk = 1 << 20;

    /// <summary>
    /// Compares <paramref name="imagePath"/> with build <paramref name="baseBuildId"/> block by
    /// block, writes the differing blocks into an overlay (all-zero ones as zero extents) and
    /// exports it: the new build stores only the changed blocks. Progress counts compared bytes.
    /// </summary>
    public static async Task<BuildHeader> ExportImageAsync(LayerStore store, Guid baseBuildId, string imagePath, string workDirectory, IProgress<long>? progress, CancellationToken cancellationToken)
    {
        using Build build = await store.OpenAsync(baseBuildId, cancellationToken);
        using SafeFileHandle image = File.OpenHandle(imagePath, FileMode.Open, FileAccess.Read);
        long size = RandomAccess.GetLength(image);
        if (size != build.Size)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"'{imagePath}' is {size} bytes but build {baseBuildId} is {build.Size}; resize the image to match (layers keep the device size).");
        }
        using OverlayDevice overlay = OverlayDevice.Create(build, workDirectory);
        int bs = build.BlockSize;
        byte[] mine = ArrayPool<byte>.Shared.Rent(Chunk);
        byte[] theirs = ArrayPool<byte>.Shared.Rent(Chunk);
        try
        {
            for (long pos = 0; pos < size; pos += Chunk)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = (int)Math.Min(Chunk, size - pos);
                await LayerStore.ReadExactlyAsync(image, mine.AsMemory(0, n), pos, cancellationToken);
                await build.ReadAsync(pos, theirs.AsMemory(0, n), cancellationToken);
                for (int b = 0; b < n; b += bs)
                {
                    ReadOnlyMemory<byte> block = mine.AsMemory(b, bs);
                    if (block.Span.SequenceEqual(theirs.AsSpan(b, bs)))
                    {
                        continue;
                    }
                    if (block.Span.ContainsAnyExcept((byte)0))
                    {
                        await overlay.WriteAsync(pos + b, block, cancellationToken);
                    }
                    else
                    {
                        await overlay.WriteZeroesAsync(pos + b, bs, cancellationToken);
                    }
                }
                progress?.Report(pos + n);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(mine);
            ArrayPool<byte>.Shared.Return(theirs);
        }
        return await overlay.ExportAsync(store, null, cancellationToken);
    }
}
