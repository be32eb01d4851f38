using System.Formats.Tar;

namespace Vessel.IntegrationTests.Hardening;

/// <summary>The derived image size counts inodes, not only bytes (issue 18, item 4).</summary>
public sealed class ManySmallFilesTests : IDisposable
{
    private const int Files = 300_000;
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-manyfiles-it-");

    public void Dispose() => _dir.Dispose();

    [RequiresFact("e2fsck", Timeout = 600_000)]
    public async Task Three_hundred_thousand_empty_files_build_without_size_and_check_clean()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        string tar = _dir.Combine("many.tar");
        await using (var file = new FileStream(tar, FileMode.CreateNew))
        await using (var writer = new TarWriter(file, TarEntryFormat.Ustar))
        {
            for (int d = 0; d < Files / 1000; d++)
            {
                writer.WriteEntry(new UstarTarEntry(TarEntryType.Directory, $"d{d}/") { Mode = (UnixFileMode)0x1ED });
                for (int f = 0; f < 1000; f++)
                {
                    writer.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, $"d{d}/f{f}") { Mode = (UnixFileMode)0x1A4 });
                }
            }
        }
        string image = _dir.Combine("many.ext4");
        ProcessResult r = await VesselCli.RunAsync(cts.Token, "rootfs", "build", tar, "-o", image);
        Assert.True(r.ExitCode == 0, r.StandardError);
        ProcessResult fsck = await ExternalProcess.RunAsync("e2fsck", ["-fn", image], cts.Token, timeout: TimeSpan.FromMinutes(5));
        Assert.True(fsck.ExitCode == 0, fsck.StandardOutput + fsck.StandardError);
        // "N/M files": more than the content's files and directories are in use.
        System.Text.RegularExpressions.Match m = System.Text.RegularExpressions.Regex.Match(fsck.StandardOutput, @"(\d+)/(\d+) files");
        Assert.True(m.Success, fsck.StandardOutput);
        long used = long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        long total = long.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(used > Files + (Files / 1000), fsck.StandardOutput);
        Assert.True(total - used >= Files / 16, $"only {total - used} inodes left free"); // room for the sandbox to add files
    }
}
