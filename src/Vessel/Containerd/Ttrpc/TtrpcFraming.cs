using System.Buffers;

namespace Vessel.Containerd.Ttrpc;

/// <summary>One received ttrpc frame: its header and its data (owned by the caller).</summary>
internal readonly record struct TtrpcFrame(TtrpcFrameHeader Header, byte[] Data);

/// <summary>
/// Reads and writes whole ttrpc frames on a stream. A frame over the 4 MiB limit is refused
/// before its data is read, in both directions; a stream that ends inside a frame is a
/// protocol error; a stream that ends between frames is a clean end (null).
/// </summary>
internal static class TtrpcFraming
{
    public static async Task<TtrpcFrame?> ReadAsync(Stream stream, CancellationToken cancellationToken)
    {
        byte[] header = ArrayPool<byte>.Shared.Rent(TtrpcFrameHeader.Size);
        try
        {
            int read = await stream.ReadAtLeastAsync(header.AsMemory(0, TtrpcFrameHeader.Size), TtrpcFrameHeader.Size, throwOnEndOfStream: false, cancellationToken);
            if (read == 0)
            {
                return null;
            }
            if (read < TtrpcFrameHeader.Size)
            {
                throw new TtrpcProtocolException($"ttrpc: the connection ended inside a frame header ({read} of {TtrpcFrameHeader.Size} bytes).");
            }
            TtrpcFrameHeader h = TtrpcFrameHeader.Read(header);
            if (h.Length > TtrpcFrameHeader.MaxDataLength)
            {
                throw new TtrpcProtocolException($"ttrpc: frame of stream {h.StreamId} declares {h.Length} bytes of data, over the {TtrpcFrameHeader.MaxDataLength}-byte limit.");
            }
            byte[] data = h.Length == 0 ? [] : new byte[h.Length];
            read = await stream.ReadAtLeastAsync(data, data.Length, throwOnEndOfStream: false, cancellationToken);
            if (read < data.Length)
            {
                throw new TtrpcProtocolException($"ttrpc: the connection ended inside the data of a frame of stream {h.StreamId} ({read} of {h.Length} bytes).");
            }
            return new TtrpcFrame(h, data);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(header);
        }
    }

    /// <summary>Writes one frame (header and data in one write, so concurrent writers need only serialize calls).</summary>
    public static async Task WriteAsync(Stream stream, uint streamId, TtrpcMessageType type, byte flags, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (data.Length > TtrpcFrameHeader.MaxDataLength)
        {
            throw new TtrpcProtocolException($"ttrpc: a {type} of {data.Length} bytes is over the {TtrpcFrameHeader.MaxDataLength}-byte frame limit.");
        }
        byte[] buffer = ArrayPool<byte>.Shared.Rent(TtrpcFrameHeader.Size + data.Length);
        try
        {
            new TtrpcFrameHeader((uint)data.Length, streamId, type, flags).Write(buffer);
            data.Span.CopyTo(buffer.AsSpan(TtrpcFrameHeader.Size));
            await stream.WriteAsync(buffer.AsMemory(0, TtrpcFrameHeader.Size + data.Length), cancellationToken);
            await stream.FlushAsync(cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
