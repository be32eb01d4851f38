namespace Vessel.Blocks;

/// <summary>
/// The write half of <see cref="IBlockDevice"/> for a device that is never written (a published
/// build, a snapshot's RAM read from the bucket): writes, trims and write-zeroes are refused
/// with the subclass's <see cref="ReadOnlyError"/>, and a flush has nothing to do. A subclass
/// also declares <see cref="IBlockDevice"/> and writes the read half itself, so its reads are
/// not virtual calls.
/// </summary>
internal abstract class ReadOnlyBlockDevice
{
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken) => throw ReadOnlyError();

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken) => throw ReadOnlyError();

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken) => throw ReadOnlyError();

    public ValueTask FlushAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>What a write is told: which device refused it, and where writes go instead.</summary>
    protected abstract VesselException ReadOnlyError();
}
