using Vessel.Tar;

namespace Vessel.Tests.Tar;

public sealed class TarWriterTests
{
    private static readonly DateTimeOffset Modified = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);

    private static readonly string LongName = string.Join('/', Enumerable.Repeat("directory-name", 12)) + "/file";

    private static async Task<byte[]> WriteSampleAsync()
    {
        using var archive = new MemoryStream();
        await using (var writer = new TarWriter(archive, leaveOpen: true))
        {
            await writer.WriteDirectoryAsync(".", (UnixFileMode)0x1ED, Modified, CancellationToken.None);
            await writer.WriteDirectoryAsync("bin", (UnixFileMode)0x1ED, Modified, CancellationToken.None);
            await writer.WriteFileAsync("bin/tool", (UnixFileMode)0x9ED, Modified, new MemoryStream("#!/bin/sh\necho hi\n"u8.ToArray()), 18, CancellationToken.None);
            await writer.WriteSymlinkAsync("bin/link", "tool", (UnixFileMode)0x1FF, Modified, CancellationToken.None);
            await writer.WriteFileAsync(LongName, (UnixFileMode)0x1A4, Modified, new MemoryStream(new byte[1000]), 1000, CancellationToken.None);
            await writer.WriteFileAsync("caf\u00e9.txt", (UnixFileMode)0x1A4, Modified, new MemoryStream([]), 0, CancellationToken.None);
            await writer.WriteSymlinkAsync("far", "/" + LongName, (UnixFileMode)0x1FF, Modified, CancellationToken.None);
        }
        return archive.ToArray();
    }

    [Fact]
    public async Task What_it_writes_reads_back_with_names_modes_links_and_data()
    {
        byte[] archive = await WriteSampleAsync();
        Assert.Equal(0, archive.Length % TarReader.BlockSize);
        var entries = new List<(TarEntry Entry, string Data)>();
        using (var reader = new TarReader(new MemoryStream(archive), "test"))
        {
            while (await reader.NextAsync(CancellationToken.None) is { } e)
            {
                byte[] data = new byte[e.DataLength];
                await reader.ReadDataFullAsync(data, CancellationToken.None);
                entries.Add((e, Encoding.UTF8.GetString(data)));
            }
            await reader.DrainAsync(CancellationToken.None);
        }

        Assert.Equal(["./", "bin/", "bin/tool", "bin/link", LongName, "caf\u00e9.txt", "far"], entries.Select(e => e.Entry.Name));
        Assert.Equal(TarEntryType.Directory, entries[1].Entry.Type);
        Assert.Equal(0x9ED, entries[2].Entry.Mode);
        Assert.Equal("#!/bin/sh\necho hi\n", entries[2].Data);
        Assert.Equal((TarEntryType.SymbolicLink, "tool"), (entries[3].Entry.Type, entries[3].Entry.LinkName));
        Assert.Equal(1000, entries[4].Entry.Size);
        Assert.Equal("/" + LongName, entries[6].Entry.LinkName);
        Assert.All(entries, e => Assert.Equal((0L, 0L, 1_700_000_000L), (e.Entry.Uid, e.Entry.Gid, e.Entry.ModificationTime.Seconds)));
    }

    [RequiresFact("tar", Timeout = 30_000)]
    public async Task Gnu_tar_lists_what_it_writes_the_same_way()
    {
        byte[] archive = await WriteSampleAsync();
        using TempDirectory dir = TempDirectory.Create("vessel-tarwriter-");
        string path = Path.Combine(dir.Path, "sample.tar");
        await File.WriteAllBytesAsync(path, archive);
        var psi = new ProcessStartInfo("tar", ["-tvf", path, "--numeric-owner"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using Process tar = Process.Start(psi)!;
        string listing = await tar.StandardOutput.ReadToEndAsync();
        string errors = await tar.StandardError.ReadToEndAsync();
        await tar.WaitForExitAsync();
        Assert.True(tar.ExitCode == 0, errors);
        string[] lines = listing.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(7, lines.Length);
        Assert.StartsWith("-rwsr-xr-x 0/0", lines[2], StringComparison.Ordinal);
        Assert.EndsWith("bin/link -> tool", lines[3], StringComparison.Ordinal);
        Assert.EndsWith(LongName, lines[4], StringComparison.Ordinal);
        Assert.EndsWith("far -> /" + LongName, lines[6], StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_file_that_is_shorter_than_announced_fails_naming_it()
    {
        using var archive = new MemoryStream();
        await using var writer = new TarWriter(archive, leaveOpen: true);
        IOException e = await Assert.ThrowsAsync<IOException>(() =>
            writer.WriteFileAsync("short", (UnixFileMode)0x1A4, Modified, new MemoryStream(new byte[10]), 20, CancellationToken.None));
        Assert.Contains("'short' became shorter", e.Message, StringComparison.Ordinal);
    }
}
