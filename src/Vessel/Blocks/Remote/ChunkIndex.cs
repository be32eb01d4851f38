using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Vessel.Blocks;

/// <summary>
/// The digests of a build's data chunks in object storage (docs/formats/block-layer.md, "Object
/// storage"): every chunk fetched is checked against its SHA-256 here before it is used, and the
/// index itself names its build and the header's whole-data SHA-256, so an index never vouches
/// for another build's data.
/// </summary>
internal sealed class ChunkIndex
{
    public const int MetadataSize = 80;
    public const int TrailerSize = 32;
    private static ReadOnlySpan<byte> Magic => "VSLCHUNK"u8;

    public required Guid BuildId { get; init; }

    public required int ChunkSize { get; init; }

    public required long DataLength { get; init; }

    public required byte[] DataSha256 { get; init; }

    public required IReadOnlyList<byte[]> ChunkSha256 { get; init; }

    public int ChunkCount => ChunkSha256.Count;

    /// <summary>How many chunks data of <paramref name="length"/> bytes takes.</summary>
    public static int CountFor(long length, int chunkSize) => checked((int)((length + chunkSize - 1) / chunkSize));

    /// <summary>The length of chunk <paramref name="index"/> (the last one may be short).</summary>
    public int LengthOf(int index) => (int)Math.Min(ChunkSize, DataLength - ((long)index * ChunkSize));

    public byte[] ToBytes()
    {
        byte[] bytes = new byte[MetadataSize + (32 * ChunkCount) + TrailerSize];
        Span<byte> s = bytes;
        Magic.CopyTo(s);
        BinaryPrimitives.WriteInt32LittleEndian(s[8..], 1);
        BinaryPrimitives.WriteInt32LittleEndian(s[12..], ChunkSize);
        BinaryPrimitives.WriteInt64LittleEndian(s[16..], DataLength);
        BuildId.TryWriteBytes(s[24..40], bigEndian: true, out _);
        DataSha256.CopyTo(s[40..72]);
        BinaryPrimitives.WriteInt32LittleEndian(s[72..], ChunkCount);
        for (int i = 0; i < ChunkCount; i++)
        {
            ChunkSha256[i].CopyTo(s[(MetadataSize + (32 * i))..]);
        }
        SHA256.HashData(s[..^TrailerSize], s[^TrailerSize..]);
        return bytes;
    }

    /// <summary>Reads and checks an index; <paramref name="what"/> names it in errors.</summary>
    public static ChunkIndex Read(ReadOnlySpan<byte> s, string what)
    {
        if (s.Length < MetadataSize + TrailerSize || !s[..8].SequenceEqual(Magic))
        {
            throw Corrupt(what, "is not a chunk index (bad magic or too short)");
        }
        if (!SHA256.HashData(s[..^TrailerSize]).AsSpan().SequenceEqual(s[^TrailerSize..]))
        {
            throw Corrupt(what, "does not match its checksum");
        }
        int version = BinaryPrimitives.ReadInt32LittleEndian(s[8..]);
        int chunkSize = BinaryPrimitives.ReadInt32LittleEndian(s[12..]);
        long dataLength = BinaryPrimitives.ReadInt64LittleEndian(s[16..]);
        int count = BinaryPrimitives.ReadInt32LittleEndian(s[72..]);
        if (version != 1)
        {
            throw Corrupt(what, $"has version {version}; this Vessel reads version 1");
        }
        if (chunkSize < 4096 || (chunkSize & (chunkSize - 1)) != 0 || chunkSize > 64 << 20)
        {
            throw Corrupt(what, $"has chunk size {chunkSize}, not a power of two from 4 KiB to 64 MiB");
        }
        if (dataLength < 0 || count != CountFor(dataLength, chunkSize) || s.Length != MetadataSize + (32L * count) + TrailerSize)
        {
            throw Corrupt(what, $"lists {count} chunks for {dataLength} bytes of data");
        }
        var chunks = new byte[count][];
        for (int i = 0; i < count; i++)
        {
            chunks[i] = s.Slice(MetadataSize + (32 * i), 32).ToArray();
        }
        return new ChunkIndex
        {
            BuildId = new Guid(s[24..40], bigEndian: true),
            ChunkSize = chunkSize,
            DataLength = dataLength,
            DataSha256 = s[40..72].ToArray(),
            ChunkSha256 = chunks,
        };
    }

    private static VesselException Corrupt(string what, string why) => new(VesselErrorReason.Corrupt, $"{what} {why}; the bucket is damaged or was written by something else.");
}
