using System.Buffers.Binary;

namespace Vessel.Rootfs;

/// <summary>What a SOURCE argument names: a ready ext4 image, or an image to build a rootfs from.</summary>
public enum RootfsSourceKind
{
    /// <summary>An ext4 filesystem image (superblock magic at byte 1080), booted as it is.</summary>
    Ext4Image,

    /// <summary>Anything docs/formats/image-sources.md accepts: a tarball, an OCI layout or archive, a docker-archive, a registry reference.</summary>
    Image,
}

/// <summary>
/// Tells an ext4 image from an image source by a few bytes, before anything expensive runs
/// (no kit, no VM): a file is an ext4 image when its superblock magic 0xEF53 is at byte
/// 1080 (ext4 disk layout: the superblock starts at 1024, s_magic at offset 0x38); it is an
/// image when it starts like a gzip, zstd, xz or bzip2 stream or a tar header (the
/// image-source reader then says which kind, or why not). Any other file is refused with
/// a message that names what it is not.
/// </summary>
public static class RootfsSource
{
    public const int Ext4MagicOffset = 1080; // superblock at 1024 + s_magic at 0x38
    public const ushort Ext4Magic = 0xEF53;
    private const int TarHeaderSize = 512;
    private const int TarChecksumOffset = 148; // ustar header: chksum[8] (POSIX pax/ustar, "Header Block")
    private const int TarMagicOffset = 257; // "ustar"
    private static readonly string[] s_prefixes = ["oci:", "oci-archive:", "docker-archive:", "tarball:", "docker://"];

    public static RootfsSourceKind Classify(string source)
    {
        ArgumentException.ThrowIfNullOrEmpty(source);
        if (s_prefixes.Any(p => source.StartsWith(p, StringComparison.Ordinal)) || !File.Exists(source))
        {
            // A prefixed reference, a directory, a path with a selector or a registry reference:
            // the image-source reader recognizes it or says why not.
            return RootfsSourceKind.Image;
        }
        byte[] head = new byte[Ext4MagicOffset + 2];
        int length;
        using (var file = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None))
        {
            length = file.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        ReadOnlySpan<byte> bytes = head.AsSpan(0, length);
        if (bytes.Length >= Ext4MagicOffset + 2 && BinaryPrimitives.ReadUInt16LittleEndian(bytes[Ext4MagicOffset..]) == Ext4Magic)
        {
            return RootfsSourceKind.Ext4Image;
        }
        if (IsCompressed(bytes) || IsTarHeader(bytes))
        {
            return RootfsSourceKind.Image;
        }
        string what = bytes.Length == 0 ? "an empty file" : $"a file of {new FileInfo(source).Length} bytes";
        throw new VesselException(VesselErrorReason.InvalidInput,
            $"'{source}' ({what}) is not an ext4 image (no ext4 superblock magic 0xEF53 at byte {Ext4MagicOffset}) and not a container image " +
            "(not a tar or gzip archive, an OCI layout directory or a registry reference; see docs/formats/image-sources.md).");
    }

    private static bool IsCompressed(ReadOnlySpan<byte> b) =>
        b.StartsWith((ReadOnlySpan<byte>)[0x1f, 0x8b]) // gzip
        || b.StartsWith((ReadOnlySpan<byte>)[0x28, 0xb5, 0x2f, 0xfd]) // zstd
        || b.StartsWith((ReadOnlySpan<byte>)[0xfd, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0]) // xz
        || b.StartsWith("BZh"u8); // bzip2

    /// <summary>A ustar/GNU magic, or (for old v7 tars without one) a header whose checksum adds up.</summary>
    private static bool IsTarHeader(ReadOnlySpan<byte> b)
    {
        if (b.Length < TarHeaderSize)
        {
            return false;
        }
        if (b[TarMagicOffset..].StartsWith("ustar"u8))
        {
            return true;
        }
        ReadOnlySpan<byte> field = b.Slice(TarChecksumOffset, 8);
        long stated = 0;
        int digits = 0;
        foreach (byte c in field)
        {
            if (c is >= (byte)'0' and <= (byte)'7')
            {
                stated = (stated * 8) + (c - '0');
                digits++;
            }
            else if (c is not ((byte)' ' or 0))
            {
                return false;
            }
        }
        if (digits == 0)
        {
            return false;
        }
        long sum = 0;
        for (int i = 0; i < TarHeaderSize; i++)
        {
            sum += i is >= TarChecksumOffset and < TarChecksumOffset + 8 ? (byte)' ' : b[i];
        }
        return sum == stated;
    }
}
