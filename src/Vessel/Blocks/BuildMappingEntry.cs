using System.Buffers.Binary;

namespace Vessel.Blocks;

/// <summary>
/// One extent of a build's mapping: 40 bytes, little-endian (docs/formats/block-layer.md,
/// "Mapping entry"). Device bytes <c>[Offset, Offset + Length)</c> live in the data file of
/// <see cref="BuildId"/> at <see cref="StorageOffset"/>; the nil id means "reads as zeros".
/// </summary>
internal readonly record struct BuildMappingEntry(long Offset, long Length, Guid BuildId, long StorageOffset)
{
    public const int Size = 40;
    private const int OffsetAt = 0;
    private const int LengthAt = 8;
    private const int BuildIdAt = 16;
    private const int StorageOffsetAt = 32;

    public bool IsZero => BuildId == Guid.Empty;

    public long End => Offset + Length;

    public static BuildMappingEntry Zero(long offset, long length) => new(offset, length, Guid.Empty, 0);

    public static BuildMappingEntry Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadInt64LittleEndian(source[OffsetAt..]),
        BinaryPrimitives.ReadInt64LittleEndian(source[LengthAt..]),
        new Guid(source.Slice(BuildIdAt, 16), bigEndian: true),
        BinaryPrimitives.ReadInt64LittleEndian(source[StorageOffsetAt..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteInt64LittleEndian(destination[OffsetAt..], Offset);
        BinaryPrimitives.WriteInt64LittleEndian(destination[LengthAt..], Length);
        BuildId.TryWriteBytes(destination.Slice(BuildIdAt, 16), bigEndian: true, out _);
        BinaryPrimitives.WriteInt64LittleEndian(destination[StorageOffsetAt..], StorageOffset);
    }
}
