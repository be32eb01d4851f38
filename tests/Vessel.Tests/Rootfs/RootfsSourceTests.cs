using System.Formats.Tar;
using System.IO.Compression;

namespace Vessel.Tests.Rootfs;

public sealed class RootfsSourceTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-source-");

    public void Dispose() => _dir.Dispose();

    private string Write(string name, byte[] data)
    {
        string path = _dir.Combine(name);
        File.WriteAllBytes(path, data);
        return path;
    }

    private static byte[] TarOf(TarEntryFormat format)
    {
        using var ms = new MemoryStream();
        using (var w = new TarWriter(ms, format, leaveOpen: true))
        {
            var entry = format == TarEntryFormat.V7 ? (TarEntry)new V7TarEntry(TarEntryType.V7RegularFile, "etc/hostname") : new PaxTarEntry(TarEntryType.RegularFile, "etc/hostname");
            entry.DataStream = new MemoryStream("box\n"u8.ToArray());
            w.WriteEntry(entry);
        }
        return ms.ToArray();
    }

    [Fact]
    public void Random_bytes_are_refused_naming_what_the_file_is_not()
    {
        byte[] noise = new byte[1 << 20];
        new Random(11).NextBytes(noise);
        noise[0] = 0; // not a gzip magic by chance
        string path = Write("noise.bin", noise);
        VesselException e = Assert.Throws<VesselException>(() => RootfsSource.Classify(path));
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
        Assert.Contains("noise.bin", e.Message, StringComparison.Ordinal);
        Assert.Contains("not an ext4 image (no ext4 superblock magic 0xEF53 at byte 1080)", e.Message, StringComparison.Ordinal);
        Assert.Contains("not a container image", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_empty_file_and_a_short_text_file_are_refused()
    {
        Assert.Contains("an empty file", Assert.Throws<VesselException>(() => RootfsSource.Classify(Write("empty", []))).Message, StringComparison.Ordinal);
        Assert.Throws<VesselException>(() => RootfsSource.Classify(Write("notes.txt", "just some text\n"u8.ToArray())));
    }

    [RequiresFact("busybox")]
    public async Task An_ext4_image_from_the_rootfs_builder_is_an_ext4_image()
    {
        string image = _dir.Combine("tiny.ext4");
        byte[] layer = LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/motd", "hi\n"));
        await RootfsBuilder.BuildAsync(new LayersImageSource("tiny", layer), image, new RootfsBuildOptions { FreeBytes = 1 << 20 }, null, CancellationToken.None);
        Assert.Equal(RootfsSourceKind.Ext4Image, RootfsSource.Classify(image));
    }

    [Fact]
    public void Tarballs_of_every_format_and_compressed_files_are_images()
    {
        byte[] pax = TarOf(TarEntryFormat.Pax);
        Assert.Equal(RootfsSourceKind.Image, RootfsSource.Classify(Write("pax.tar", pax)));
        Assert.Equal(RootfsSourceKind.Image, RootfsSource.Classify(Write("v7.tar", TarOf(TarEntryFormat.V7))));
        using var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Fastest, leaveOpen: true))
        {
            z.Write(pax);
        }
        Assert.Equal(RootfsSourceKind.Image, RootfsSource.Classify(Write("rootfs.tar.gz", gz.ToArray())));
        // zstd: the image-source reader refuses it with its own message ("decompress it first").
        Assert.Equal(RootfsSourceKind.Image, RootfsSource.Classify(Write("rootfs.tar.zst", [0x28, 0xb5, 0x2f, 0xfd, 0, 0])));
    }

    [Fact]
    public void References_directories_and_missing_paths_go_to_the_image_source_reader()
    {
        Assert.Equal(RootfsSourceKind.Image, RootfsSource.Classify("docker://localhost:5000/app:1"));
        Assert.Equal(RootfsSourceKind.Image, RootfsSource.Classify("oci:" + _dir.Path + ":latest"));
        Assert.Equal(RootfsSourceKind.Image, RootfsSource.Classify(_dir.Path));
        Assert.Equal(RootfsSourceKind.Image, RootfsSource.Classify("busybox:1.36"));
    }
}
