namespace Vessel.Tests.Guest;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class CpioWriterTests
{
    [RequiresFact("cpio", Timeout = 30_000)]
    public async Task Archive_extracts_with_gnu_cpio_with_files_links_dirs_and_modes()
    {
        using TempDirectory dir = TempDirectory.Create("vessel-cpio-");
        string archive = dir.Combine("a.cpio");
        using (FileStream f = File.Create(archive))
        {
            var w = new CpioWriter(f);
            w.AddDirectory("/bin");
            w.AddFile("/bin/tool", Encoding.UTF8.GetBytes("#!/bin/sh\necho odd-length\n"), 0x1ED);
            w.AddSymlink("/bin/sh", "tool");
            w.AddFile("/empty", [], 0x180);
            w.Finish();
        }
        Assert.Equal(0, new FileInfo(archive).Length % 512);
        string outDir = dir.Combine("out");
        Directory.CreateDirectory(outDir);
        ProcessResult r = await ExternalProcess.RunAsync("sh", ["-c", $"cpio -id --quiet < {archive}"], CancellationToken.None, workingDirectory: outDir);
        r.EnsureSuccess();
        Assert.Equal("#!/bin/sh\necho odd-length\n", await File.ReadAllTextAsync(Path.Combine(outDir, "bin", "tool")));
        Assert.Equal("tool", new FileInfo(Path.Combine(outDir, "bin", "sh")).LinkTarget);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(outDir, "empty")));
        Assert.True(File.GetUnixFileMode(Path.Combine(outDir, "bin", "tool")).HasFlag(UnixFileMode.UserExecute));
    }

    [Fact]
    public void Header_is_newc_with_padded_name_and_data()
    {
        using var ms = new MemoryStream();
        var w = new CpioWriter(ms);
        w.AddFile("a", [1, 2, 3], 0x1A4);
        byte[] bytes = ms.ToArray();
        string header = Encoding.ASCII.GetString(bytes, 0, CpioWriter.HeaderSize);
        Assert.StartsWith("070701", header, StringComparison.Ordinal);
        Assert.Equal("000081a4", header.Substring(14, 8)); // regular file, 0644
        Assert.Equal("00000003", header.Substring(54, 8)); // size
        Assert.Equal("00000002", header.Substring(94, 8)); // "a\0"
        // 110 + 2 = 112 is 4-aligned; data 3 bytes padded to 4.
        Assert.Equal(116, bytes.Length);
        Assert.Equal([1, 2, 3, 0], bytes[112..116]);
    }

    [Fact]
    public void Unclean_or_duplicate_names_are_refused_and_fault_the_writer()
    {
        var w = new CpioWriter(new MemoryStream());
        Assert.Throws<InvalidDataException>(() => w.AddFile("../etc/passwd", []));
        Assert.Throws<InvalidOperationException>(() => w.AddFile("ok", []));
        var w2 = new CpioWriter(new MemoryStream());
        w2.AddDirectory("d");
        Assert.Throws<InvalidDataException>(() => w2.AddDirectory("/d/"));
    }
}
