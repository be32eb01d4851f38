using System.Formats.Tar;
using System.IO.Compression;

namespace Vessel.Testing;

/// <summary>
/// An image made of in-memory layer tarballs, for tests of the layer applier and the ext4
/// writer (the real image sources have their own tests).
/// </summary>
public sealed class LayersImageSource : IImageSource
{
    private readonly List<byte[]> _layers;

    public LayersImageSource(string description, params byte[][] layers)
    {
        Description = description;
        _layers = layers.ToList();
    }

    public string Description { get; }

    public Task<ResolvedImage> ResolveAsync(CancellationToken cancellationToken)
    {
        var descriptors = _layers.Select(l => new LayerDescriptor("sha256:" + Convert.ToHexStringLower(SHA256.HashData(l)), "application/vnd.oci.image.layer.v1.tar", l.Length)).ToList();
        string digest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(_layers.SelectMany(l => l).ToArray()));
        return Task.FromResult(new ResolvedImage(null, digest, ImageConfig.Empty, descriptors));
    }

    public Task<Stream> OpenLayerAsync(int index, CancellationToken cancellationToken)
    {
        byte[] data = _layers[index];
        Stream s = new MemoryStream(data, writable: false);
        if (data.Length > 2 && data[0] == 0x1f && data[1] == 0x8b)
        {
            s = new GZipStream(s, CompressionMode.Decompress);
        }
        return Task.FromResult(s);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    /// <summary><paramref name="data"/> gzipped (one member, fastest level): a compressed layer or blob for the tests.</summary>
    public static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(data);
        }
        return output.ToArray();
    }

    /// <summary>A tarball made with System.Formats.Tar (pax format).</summary>
    public static byte[] Tar(Action<TarWriter> write)
    {
        using var ms = new MemoryStream();
        using (var w = new TarWriter(ms, TarEntryFormat.Pax, leaveOpen: true))
        {
            write(w);
        }
        return ms.ToArray();
    }

    public static void File(TarWriter w, string name, string content, int mode = 0x1A4, int uid = 0, int gid = 0)
    {
        var e = new PaxTarEntry(TarEntryType.RegularFile, name)
        {
            DataStream = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(content)),
            Mode = (UnixFileMode)mode,
            Uid = uid,
            Gid = gid,
            ModificationTime = new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.Zero),
        };
        w.WriteEntry(e);
    }

    public static void Dir(TarWriter w, string name, int mode = 0x1ED)
    {
        w.WriteEntry(new PaxTarEntry(TarEntryType.Directory, name) { Mode = (UnixFileMode)mode, ModificationTime = new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.Zero) });
    }

    public static void Link(TarWriter w, TarEntryType type, string name, string target)
    {
        w.WriteEntry(new PaxTarEntry(type, name) { LinkName = target, Mode = (UnixFileMode)0x1FF, ModificationTime = new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.Zero) });
    }
}
