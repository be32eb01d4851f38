using System.Formats.Tar;
using System.Text.Json;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// Crafts the inputs of the hostile-input tests: tar streams with System.Formats.Tar or raw
/// headers, gzip cut short or scribbled over, and OCI layouts written by hand (so a blob can
/// be tampered with after its digest was recorded, or the only manifest is for arm64).
/// </summary>
internal static class HostileInputs
{
    public const string Tag = "hostile";
    public const string LayerMediaType = "application/vnd.oci.image.layer.v1.tar";
    public const string GzipLayerMediaType = "application/vnd.oci.image.layer.v1.tar+gzip";
    private static readonly DateTimeOffset Time = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);

    /// <summary>A tar whose entries are given as (type, name, link target or content).</summary>
    public static byte[] Tar(params (TarEntryType Type, string Name, string? Value)[] entries)
    {
        using var buffer = new MemoryStream();
        using (var tar = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach ((TarEntryType type, string name, string? value) in entries)
            {
                var entry = new PaxTarEntry(type, name)
                {
                    Mode = type == TarEntryType.Directory ? (UnixFileMode)0x1ED : (UnixFileMode)0x1A4,
                    ModificationTime = Time,
                };
                if (type is TarEntryType.SymbolicLink or TarEntryType.HardLink)
                {
                    entry.LinkName = value!;
                }
                else if (type == TarEntryType.RegularFile)
                {
                    entry.DataStream = new MemoryStream(Encoding.UTF8.GetBytes(value ?? string.Empty));
                }
                tar.WriteEntry(entry);
            }
        }
        return buffer.ToArray();
    }

    /// <summary>A tar with a directory and a file of <paramref name="size"/> random (incompressible) bytes.</summary>
    public static byte[] TarWithRandomFile(string name, int size)
    {
        byte[] content = new byte[size];
        new Random(42).NextBytes(content);
        using var buffer = new MemoryStream();
        using (var tar = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "data/") { Mode = (UnixFileMode)0x1ED, ModificationTime = Time });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name)
            {
                Mode = (UnixFileMode)0x1A4,
                ModificationTime = Time,
                DataStream = new MemoryStream(content),
            });
        }
        return buffer.ToArray();
    }

    /// <summary>
    /// A regular file entry whose pax header claims <paramref name="size"/> bytes (far more
    /// than follow), written by hand because TarWriter takes the size from the data stream.
    /// </summary>
    public static byte[] TarClaimingSize(string name, long size)
    {
        using var buffer = new MemoryStream();
        string record = PaxRecord("size", size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        byte[] recordBytes = Encoding.ASCII.GetBytes(record);
        buffer.Write(UstarHeader("PaxHeaders/" + name, 'x', recordBytes.Length));
        buffer.Write(Pad(recordBytes));
        buffer.Write(UstarHeader(name, '0', 0));
        buffer.Write(new byte[4096]); // a little "content", then the archive just ends
        return buffer.ToArray();
    }

    /// <summary>
    /// Writes an OCI image layout with one layer. With <paramref name="viaIndex"/> the
    /// tag points at an image index (a "manifest list") whose only manifest is for
    /// <paramref name="architecture"/>; otherwise at the manifest directly.
    /// Returns the layer blob's path (for tampering).
    /// </summary>
    public static string WriteOciLayout(string layout, byte[] layerTar, bool gzip, string architecture, bool viaIndex)
    {
        Directory.CreateDirectory(Path.Combine(layout, "blobs", "sha256"));
        File.WriteAllText(Path.Combine(layout, "oci-layout"), """{"imageLayoutVersion":"1.0.0"}""");
        byte[] layer = gzip ? LayersImageSource.Gzip(layerTar) : layerTar;
        (string layerDigest, string layerPath) = WriteBlob(layout, layer);
        var config = new
        {
            architecture,
            os = "linux",
            config = new { Env = new[] { "PATH=/bin" } },
            rootfs = new { type = "layers", diff_ids = new[] { Digest(layerTar) } },
        };
        byte[] configBytes = JsonSerializer.SerializeToUtf8Bytes(config);
        (string configDigest, _) = WriteBlob(layout, configBytes);
        var manifest = new
        {
            schemaVersion = 2,
            mediaType = "application/vnd.oci.image.manifest.v1+json",
            config = new { mediaType = "application/vnd.oci.image.config.v1+json", digest = configDigest, size = configBytes.Length },
            layers = new[] { new { mediaType = gzip ? GzipLayerMediaType : LayerMediaType, digest = layerDigest, size = layer.Length } },
        };
        byte[] manifestBytes = JsonSerializer.SerializeToUtf8Bytes(manifest);
        (string manifestDigest, _) = WriteBlob(layout, manifestBytes);
        var annotations = new Dictionary<string, string> { ["org.opencontainers.image.ref.name"] = Tag };
        object top;
        if (viaIndex)
        {
            var nested = new
            {
                schemaVersion = 2,
                mediaType = "application/vnd.oci.image.index.v1+json",
                manifests = new[]
                {
                    new
                    {
                        mediaType = "application/vnd.oci.image.manifest.v1+json",
                        digest = manifestDigest,
                        size = manifestBytes.Length,
                        platform = new { architecture, os = "linux" },
                    },
                },
            };
            byte[] nestedBytes = JsonSerializer.SerializeToUtf8Bytes(nested);
            (string nestedDigest, _) = WriteBlob(layout, nestedBytes);
            top = new { mediaType = "application/vnd.oci.image.index.v1+json", digest = nestedDigest, size = nestedBytes.Length, annotations };
        }
        else
        {
            top = new { mediaType = "application/vnd.oci.image.manifest.v1+json", digest = manifestDigest, size = manifestBytes.Length, annotations };
        }
        File.WriteAllBytes(Path.Combine(layout, "index.json"), JsonSerializer.SerializeToUtf8Bytes(new { schemaVersion = 2, manifests = new[] { top } }));
        return layerPath;
    }

    public static string Digest(byte[] data) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(data));

    private static (string Digest, string Path) WriteBlob(string layout, byte[] data)
    {
        string digest = Digest(data);
        string path = Path.Combine(layout, "blobs", "sha256", digest["sha256:".Length..]);
        File.WriteAllBytes(path, data);
        return (digest, path);
    }

    private static string PaxRecord(string key, string value)
    {
        // "LEN key=value\n" where LEN counts the whole record, its own digits included.
        int body = key.Length + value.Length + 3; // space, '=', newline
        int length = body + 1;
        while ((body + length.ToString(System.Globalization.CultureInfo.InvariantCulture).Length) != length)
        {
            length++;
        }
        return $"{length} {key}={value}\n";
    }

    /// <summary>A 512-byte ustar header (POSIX.1-2001 "ustar Interchange Format").</summary>
    private static byte[] UstarHeader(string name, char type, long size)
    {
        byte[] header = new byte[512];
        Encoding.ASCII.GetBytes(name).AsSpan(0, Math.Min(name.Length, 100)).CopyTo(header);
        Octal(header.AsSpan(100, 8), 0x1A4);
        Octal(header.AsSpan(108, 8), 0);
        Octal(header.AsSpan(116, 8), 0);
        Octal(header.AsSpan(124, 12), size);
        Octal(header.AsSpan(136, 12), Time.ToUnixTimeSeconds());
        header[156] = (byte)type;
        "ustar\000"u8.CopyTo(header.AsSpan(257));
        header.AsSpan(148, 8).Fill((byte)' ');
        int sum = 0;
        foreach (byte b in header)
        {
            sum += b;
        }
        Octal(header.AsSpan(148, 7), sum);
        return header;
    }

    private static void Octal(Span<byte> field, long value)
    {
        string text = Convert.ToString(value, 8).PadLeft(field.Length - 1, '0');
        Encoding.ASCII.GetBytes(text).CopyTo(field);
        field[^1] = 0;
    }

    private static byte[] Pad(byte[] data)
    {
        byte[] padded = new byte[(data.Length + 511) / 512 * 512];
        data.CopyTo(padded, 0);
        return padded;
    }

    /// <summary>Flips one byte of a file in place.</summary>
    public static void FlipByte(string path, long offset)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        f.Position = offset;
        int b = f.ReadByte();
        f.Position = offset;
        f.WriteByte((byte)(b ^ 0x5A));
    }
}
