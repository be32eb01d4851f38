using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Vessel.Blocks;

/// <summary>
/// A build's header (docs/formats/block-layer.md): 112 bytes of metadata, little-endian, then
/// the mapping (<see cref="BuildMappingEntry"/>, sorted and gap-free over the whole device),
/// then a SHA-256 of everything before it. Any block resolves to its owning build in one
/// lookup, with no walk down the chain of ancestors.
/// </summary>
internal sealed record BuildHeader
{
    public const int MetadataSize = 112;
    public const int TrailerSize = 32; // SHA-256 of metadata + mapping
    public const uint CurrentVersion = 1;
    public const int MinBlockSize = 512;
    public const int MaxBlockSize = 1 << 20;
    public const int DefaultBlockSize = 4096; // the ext4 block size the rootfs builder writes
    public const int MaxMappingEntries = 1 << 24; // 640 MiB of mapping: far past any real device
    public static ReadOnlySpan<byte> Magic => "VSLBUILD"u8;

    private const int VersionAt = 8;
    private const int BlockSizeAt = 12;
    private const int SizeAt = 16;
    private const int GenerationAt = 24;
    private const int BuildIdAt = 32;
    private const int BaseBuildIdAt = 48;
    private const int DataLengthAt = 64;
    private const int DataSha256At = 72;
    private const int MappingCountAt = 104;

    public uint Version { get; init; } = CurrentVersion;

    public required int BlockSize { get; init; }

    /// <summary>Device size in bytes, a multiple of <see cref="BlockSize"/>.</summary>
    public required long Size { get; init; }

    /// <summary>0 for a base build; parent's generation + 1 for an exported layer.</summary>
    public required ulong Generation { get; init; }

    public required Guid BuildId { get; init; }

    /// <summary>The parent this build was exported from, or <see cref="Guid.Empty"/> for a base build.</summary>
    public required Guid BaseBuildId { get; init; }

    /// <summary>Length of this build's own data file (only the blocks it owns).</summary>
    public required long DataLength { get; init; }

    public required byte[] DataSha256 { get; init; }

    public required IReadOnlyList<BuildMappingEntry> Mapping { get; init; }

    public int SerializedSize => MetadataSize + (Mapping.Count * BuildMappingEntry.Size) + TrailerSize;

    /// <summary>Every build whose data this build reads, itself included when it owns data.</summary>
    public IReadOnlySet<Guid> ReferencedBuilds => Mapping.Where(e => !e.IsZero).Select(e => e.BuildId).ToHashSet();

    public byte[] ToBytes()
    {
        Validate();
        byte[] bytes = new byte[SerializedSize];
        Span<byte> s = bytes;
        Magic.CopyTo(s);
        BinaryPrimitives.WriteUInt32LittleEndian(s[VersionAt..], Version);
        BinaryPrimitives.WriteInt32LittleEndian(s[BlockSizeAt..], BlockSize);
        BinaryPrimitives.WriteInt64LittleEndian(s[SizeAt..], Size);
        BinaryPrimitives.WriteUInt64LittleEndian(s[GenerationAt..], Generation);
        BuildId.TryWriteBytes(s.Slice(BuildIdAt, 16), bigEndian: true, out _);
        BaseBuildId.TryWriteBytes(s.Slice(BaseBuildIdAt, 16), bigEndian: true, out _);
        BinaryPrimitives.WriteInt64LittleEndian(s[DataLengthAt..], DataLength);
        DataSha256.CopyTo(s.Slice(DataSha256At, 32));
        BinaryPrimitives.WriteInt32LittleEndian(s[MappingCountAt..], Mapping.Count);
        int at = MetadataSize;
        foreach (BuildMappingEntry e in Mapping)
        {
            e.Write(s.Slice(at, BuildMappingEntry.Size));
            at += BuildMappingEntry.Size;
        }
        SHA256.HashData(s[..at], s[at..]);
        return bytes;
    }

    /// <summary>Parses and validates a header; <paramref name="what"/> names it in errors.</summary>
    public static BuildHeader Read(ReadOnlySpan<byte> source, string what = "build header")
    {
        if (source.Length < MetadataSize + TrailerSize || !source[..8].SequenceEqual(Magic))
        {
            throw new InvalidDataException($"{what}: not a Vessel build header (bad magic or too short).");
        }
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(source[VersionAt..]);
        if (version != CurrentVersion)
        {
            throw new InvalidDataException($"{what}: format version {version} is not supported (this Vessel reads version {CurrentVersion}).");
        }
        int count = BinaryPrimitives.ReadInt32LittleEndian(source[MappingCountAt..]);
        if (count <= 0 || count > MaxMappingEntries)
        {
            throw new InvalidDataException($"{what}: mapping count {count} is out of range.");
        }
        long expected = MetadataSize + ((long)count * BuildMappingEntry.Size) + TrailerSize;
        if (source.Length != expected)
        {
            throw new InvalidDataException($"{what}: {source.Length} bytes, but {count} mapping entries need {expected}.");
        }
        int body = (int)expected - TrailerSize;
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(source[..body], hash);
        if (!hash.SequenceEqual(source[body..]))
        {
            throw new InvalidDataException($"{what}: checksum mismatch (the header is corrupt).");
        }
        var mapping = new BuildMappingEntry[count];
        for (int i = 0; i < count; i++)
        {
            mapping[i] = BuildMappingEntry.Read(source.Slice(MetadataSize + (i * BuildMappingEntry.Size), BuildMappingEntry.Size));
        }
        var header = new BuildHeader
        {
            Version = version,
            BlockSize = BinaryPrimitives.ReadInt32LittleEndian(source[BlockSizeAt..]),
            Size = BinaryPrimitives.ReadInt64LittleEndian(source[SizeAt..]),
            Generation = BinaryPrimitives.ReadUInt64LittleEndian(source[GenerationAt..]),
            BuildId = new Guid(source.Slice(BuildIdAt, 16), bigEndian: true),
            BaseBuildId = new Guid(source.Slice(BaseBuildIdAt, 16), bigEndian: true),
            DataLength = BinaryPrimitives.ReadInt64LittleEndian(source[DataLengthAt..]),
            DataSha256 = source.Slice(DataSha256At, 32).ToArray(),
            Mapping = mapping,
        };
        header.Validate(what);
        return header;
    }

    /// <summary>Checks the invariants every reader relies on; throws <see cref="InvalidDataException"/>.</summary>
    public void Validate(string what = "build header")
    {
        if (BlockSize < MinBlockSize || BlockSize > MaxBlockSize || (BlockSize & (BlockSize - 1)) != 0)
        {
            throw new InvalidDataException($"{what}: block size {BlockSize} is not a power of two between {MinBlockSize} and {MaxBlockSize}.");
        }
        if (Size <= 0 || Size % BlockSize != 0)
        {
            throw new InvalidDataException($"{what}: device size {Size} is not a positive multiple of the block size {BlockSize}.");
        }
        if (BuildId == Guid.Empty)
        {
            throw new InvalidDataException($"{what}: the build id is nil.");
        }
        if (DataLength < 0 || DataLength % BlockSize != 0 || DataSha256.Length != 32)
        {
            throw new InvalidDataException($"{what}: data length {DataLength} is not a multiple of the block size.");
        }
        if ((Generation == 0) != (BaseBuildId == Guid.Empty))
        {
            throw new InvalidDataException($"{what}: generation {Generation} does not match base build {BaseBuildId}.");
        }
        long expectedOffset = 0;
        foreach (BuildMappingEntry e in Mapping)
        {
            if (e.Offset != expectedOffset)
            {
                throw new InvalidDataException($"{what}: mapping has a gap or overlap at offset {expectedOffset}.");
            }
            if (e.Length <= 0 || e.Length % BlockSize != 0 || e.StorageOffset < 0 || e.StorageOffset % BlockSize != 0
                || (e.IsZero && e.StorageOffset != 0))
            {
                throw new InvalidDataException($"{what}: mapping extent at offset {e.Offset} is malformed.");
            }
            if (e.BuildId == BuildId && e.StorageOffset + e.Length > DataLength)
            {
                throw new InvalidDataException($"{what}: mapping extent at offset {e.Offset} lies past the end of the build's data.");
            }
            expectedOffset = e.End;
        }
        if (expectedOffset != Size)
        {
            throw new InvalidDataException($"{what}: mapping covers {expectedOffset} bytes, but the device has {Size}.");
        }
    }
}
