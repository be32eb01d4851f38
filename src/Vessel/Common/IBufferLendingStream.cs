namespace Vessel.Common;

/// <summary>
/// A stream that can lend the buffer it already holds instead of copying out of it, so that a
/// parser over it (<see cref="Vessel.Tar.TarReader"/>) reads its input in place.
/// </summary>
internal interface IBufferLendingStream
{
    /// <summary>
    /// The next unread bytes, as many as the stream has at hand, and consumes them; empty at
    /// the end. The segment is valid until the next read of any kind on the stream.
    /// </summary>
    public ValueTask<ArraySegment<byte>> ReadLentAsync(CancellationToken cancellationToken);
}
