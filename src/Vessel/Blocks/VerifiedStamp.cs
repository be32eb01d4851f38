using System.Buffers.Binary;

namespace Vessel.Blocks;

/// <summary>
/// What the kernel says identifies one version of a file: device, inode, size, and the
/// modification and change times to the nanosecond (statx). Any write through the filesystem
/// moves the change time, which user space cannot set back.
/// </summary>
internal readonly record struct FileIdentity(uint DeviceMajor, uint DeviceMinor, ulong Inode, long Size, long MtimeSeconds, uint MtimeNanoseconds, long CtimeSeconds, uint CtimeNanoseconds)
{
    public DateTimeOffset Ctime => DateTimeOffset.FromUnixTimeSeconds(CtimeSeconds).AddTicks(CtimeNanoseconds / 100);
}

/// <summary>
/// The verified stamp beside a build (<c>builds/&lt;id&gt;/verified</c>): "this data file, in
/// this identity, once hashed to the header's SHA-256". 104 bytes, little-endian
/// (docs/formats/block-layer.md, "Verified stamp"). A stamp only ever lets a later open skip
/// re-hashing when the file's current identity and the header's hash equal the stamp's.
/// </summary>
internal readonly record struct VerifiedStamp(Guid BuildId, byte[] DataSha256, FileIdentity Data)
{
    public const int Size = 104;
    private static ReadOnlySpan<byte> Magic => "VSLSTAMP"u8;
    private const int BuildIdAt = 8;
    private const int DataShaAt = 24;
    private const int DeviceMajorAt = 56;
    private const int DeviceMinorAt = 60;
    private const int InodeAt = 64;
    private const int SizeAt = 72;
    private const int MtimeSecondsAt = 80;
    private const int MtimeNanosecondsAt = 88;
    private const int CtimeNanosecondsAt = 92;
    private const int CtimeSecondsAt = 96;

    /// <summary>Parses a stamp; null for anything that is not a whole, current-version stamp (which just means "hash again").</summary>
    public static VerifiedStamp? TryRead(ReadOnlySpan<byte> source)
    {
        if (source.Length != Size || !source[..Magic.Length].SequenceEqual(Magic))
        {
            return null;
        }
        var identity = new FileIdentity(
            BinaryPrimitives.ReadUInt32LittleEndian(source[DeviceMajorAt..]),
            BinaryPrimitives.ReadUInt32LittleEndian(source[DeviceMinorAt..]),
            BinaryPrimitives.ReadUInt64LittleEndian(source[InodeAt..]),
            BinaryPrimitives.ReadInt64LittleEndian(source[SizeAt..]),
            BinaryPrimitives.ReadInt64LittleEndian(source[MtimeSecondsAt..]),
            BinaryPrimitives.ReadUInt32LittleEndian(source[MtimeNanosecondsAt..]),
            BinaryPrimitives.ReadInt64LittleEndian(source[CtimeSecondsAt..]),
            BinaryPrimitives.ReadUInt32LittleEndian(source[CtimeNanosecondsAt..]));
        return new VerifiedStamp(new Guid(source.Slice(BuildIdAt, 16), bigEndian: true), source.Slice(DataShaAt, 32).ToArray(), identity);
    }

    public void Write(Span<byte> destination)
    {
        destination[..Size].Clear();
        Magic.CopyTo(destination);
        BuildId.TryWriteBytes(destination[BuildIdAt..], bigEndian: true, out _);
        DataSha256.CopyTo(destination[DataShaAt..]);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[DeviceMajorAt..], Data.DeviceMajor);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[DeviceMinorAt..], Data.DeviceMinor);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[InodeAt..], Data.Inode);
        BinaryPrimitives.WriteInt64LittleEndian(destination[SizeAt..], Data.Size);
        BinaryPrimitives.WriteInt64LittleEndian(destination[MtimeSecondsAt..], Data.MtimeSeconds);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[MtimeNanosecondsAt..], Data.MtimeNanoseconds);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[CtimeNanosecondsAt..], Data.CtimeNanoseconds);
        BinaryPrimitives.WriteInt64LittleEndian(destination[CtimeSecondsAt..], Data.CtimeSeconds);
    }

    /// <summary>True when this stamp vouches for a data file with this header hash and this identity now.</summary>
    public bool Vouches(Guid buildId, ReadOnlySpan<byte> dataSha256, FileIdentity current)
        => BuildId == buildId && DataSha256.AsSpan().SequenceEqual(dataSha256) && Data == current;
}
