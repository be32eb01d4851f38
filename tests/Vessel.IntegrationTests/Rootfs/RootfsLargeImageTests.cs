using Xunit.Abstractions;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// A generated tarball with over 100,000 files (30,000 of them in one directory) and one
/// file over 4 GiB, built and read back entry by entry against the generator's description.
/// </summary>
public sealed class RootfsLargeImageTests
{
    private const long BigFileSize = (4L << 30) + (8 << 20); // past 4 GiB: 32-bit sizes and offsets wrap
    private readonly ITestOutputHelper _output;

    public RootfsLargeImageTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [RequiresFact("root", "e2fsck", "losetup", "mount", Timeout = 300_000)]
    public async Task Over_100k_files_and_a_file_over_4_GiB_read_back_exactly()
    {
        using CancellationTokenSource deadline = TestDeadline.Before(300_000);
        CancellationToken ct = deadline.Token;
        using TempDirectory work = TempDirectory.Create("vessel-large-");
        string tarball = work.Combine("large.tar");
        string image = work.Combine("large.ext4");
        var clock = Stopwatch.StartNew();

        GeneratedImage generated = GeneratedImage.Write(tarball, wideDirectoryFiles: 30_000, treeFiles: 72_000, BigFileSize);
        Assert.True(generated.FileCount > 100_000, $"only {generated.FileCount} files generated");
        _output.WriteLine($"generated {generated.FileCount} files in {clock.Elapsed.TotalSeconds:F1} s");

        clock.Restart();
        await RootfsBuild.BuildAsync(tarball, image, ct);
        _output.WriteLine($"built in {clock.Elapsed.TotalSeconds:F1} s");

        clock.Restart();
        await RootfsChecker.AssertFsckCleanAsync(image, ct);
        _output.WriteLine($"e2fsck in {clock.Elapsed.TotalSeconds:F1} s");
        clock.Restart();
        TreeSnapshot actual = await RootfsChecker.ReadBackAsync(image, work.Path, ct);
        _output.WriteLine($"read back {actual.Entries.Count} entries in {clock.Elapsed.TotalSeconds:F1} s");
        RootfsChecker.AssertSameTree(generated.Expected, actual);

        TreeEntry big = actual["/big/over-4g"];
        Assert.Equal(BigFileSize, big.Size);
        Assert.True(big.AllocatedBytes < 256L << 20,
            $"/big/over-4g allocates {big.AllocatedBytes} bytes for 3 MiB of non-zero data: zero blocks of the stream were written out instead of left as holes");
    }
}
