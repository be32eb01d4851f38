using Vessel.Interop;

namespace Vessel.IntegrationTests.Hardening;

/// <summary>
/// What a user-named output path may be: <c>vessel rootfs build -o</c> and <c>blocks flatten</c>
/// only create or replace regular files, and no symlink redirects a write (issue 18, item 1).
/// Every case runs the real CLI process.
/// </summary>
public sealed class OutputPathTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-outputs-it-");

    public void Dispose() => _dir.Dispose();

    private string SmallTarball()
    {
        string file = _dir.Combine("small.tar");
        File.WriteAllBytes(file, LayersImageSource.Tar(w =>
        {
            LayersImageSource.Dir(w, "etc");
            LayersImageSource.File(w, "etc/os-release", "ID=outputs\n");
        }));
        return file;
    }

    private static Task<ProcessResult> BuildAsync(string source, string output, CancellationToken ct) =>
        VesselCli.RunAsync(ct, "rootfs", "build", source, "-o", output, "--size", "64M");

    private static void AssertRefused(ProcessResult r, params string[] mentions)
    {
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}: {r.StandardError}");
        foreach (string m in mentions)
        {
            Assert.Contains(m, r.StandardError, StringComparison.Ordinal);
        }
        Assert.DoesNotContain("   at ", r.StandardError, StringComparison.Ordinal); // no stack trace
    }

    /// <summary>Files in the directory other than <paramref name="expected"/>: partial files included.</summary>
    private void AssertOnly(params string[] expected)
    {
        string[] names = Directory.EnumerateFileSystemEntries(_dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        Assert.Equal(expected.Order(StringComparer.Ordinal), names);
    }

    [RequiresFact("root", "mknod", Timeout = 120_000)]
    public async Task Output_on_a_character_device_is_refused_and_the_device_is_kept()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(100));
        string source = SmallTarball();
        string device = _dir.Combine("null");
        (await ExternalProcess.RunAsync("mknod", [device, "c", "1", "3"], cts.Token)).EnsureSuccess();
        AssertRefused(await BuildAsync(source, device, cts.Token), $"output '{device}' is a character device", "regular files");
        Assert.Equal(UnixFile.TypeOf(device), 0x2000);
        AssertOnly("small.tar", "null");

        // The host's /dev/null too (the probe's case): the same refusal, no /dev/null.json.
        AssertRefused(await BuildAsync(source, "/dev/null", cts.Token), "output '/dev/null' is a character device");
        Assert.Equal(0x2000, UnixFile.TypeOf("/dev/null"));
        Assert.False(File.Exists("/dev/null.json"));
    }

    [RequiresFact("mkfifo", Timeout = 120_000)]
    public async Task Output_on_a_fifo_is_refused_and_the_fifo_is_kept()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(100));
        string source = SmallTarball();
        string fifo = _dir.Combine("pipe");
        (await ExternalProcess.RunAsync("mkfifo", [fifo], cts.Token)).EnsureSuccess();
        AssertRefused(await BuildAsync(source, fifo, cts.Token), $"output '{fifo}' is a FIFO");
        Assert.Equal(0x1000, UnixFile.TypeOf(fifo));
        AssertOnly("small.tar", "pipe");
    }

    [Fact(Timeout = 120_000)]
    public async Task Output_on_a_directory_is_refused()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(100));
        string source = SmallTarball();
        string dir = _dir.Combine("adir");
        Directory.CreateDirectory(dir);
        AssertRefused(await BuildAsync(source, dir, cts.Token), $"output '{dir}' is a directory");
        AssertRefused(await BuildAsync(source, dir + "/", cts.Token), "names a directory");
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir));
        AssertOnly("small.tar", "adir");
    }

    [Fact(Timeout = 120_000)]
    public Task A_symlinked_metadata_file_is_refused_and_its_target_is_not_written()
        => AssertSymlinkRefusedAsync("y.ext4.json", "y.ext4", "metadata file", "y.ext4.json' is a symlink");

    [Fact(Timeout = 120_000)]
    public Task A_symlink_as_the_output_is_refused_and_its_target_is_not_written()
        => AssertSymlinkRefusedAsync("out.ext4", "out.ext4", "out.ext4' is a symlink");

    /// <summary>
    /// A build to <paramref name="output"/> where <paramref name="link"/> (the output itself or
    /// its metadata file) is a symlink to a precious file: refused with <paramref name="expected"/>
    /// in the message, the file unchanged and nothing else written.
    /// </summary>
    private async Task AssertSymlinkRefusedAsync(string link, string output, params string[] expected)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(100));
        string source = SmallTarball();
        string victim = _dir.Combine("v.txt");
        File.WriteAllText(victim, "precious\n");
        File.CreateSymbolicLink(_dir.Combine(link), "v.txt");
        AssertRefused(await BuildAsync(source, _dir.Combine(output), cts.Token), expected);
        Assert.Equal("precious\n", File.ReadAllText(victim));
        AssertOnly("small.tar", "v.txt", link);
    }

    [RequiresFact("e2fsck", Timeout = 120_000)]
    public async Task A_regular_file_output_and_its_metadata_are_replaced_and_no_partial_file_stays()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(100));
        string source = SmallTarball();
        string image = _dir.Combine("r.ext4");
        File.WriteAllText(image, "old");
        File.WriteAllText(image + ".json", "old");
        ProcessResult r = await BuildAsync(source, image, cts.Token);
        Assert.True(r.ExitCode == 0, r.StandardError);
        Assert.Null(await E2fs.CheckAsync(image));
        Assert.Contains("\"contentDigest\"", File.ReadAllText(image + ".json"), StringComparison.Ordinal);
        AssertOnly("small.tar", "r.ext4", "r.ext4.json");
    }

    [RequiresFact("mke2fs", "mkfifo", Timeout = 120_000)]
    public async Task Blocks_flatten_to_a_fifo_is_refused()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(100));
        string image = await Blocks.DiskImages.MakeExt4Async(_dir.Path, "img", 16, cts.Token);
        string store = _dir.Combine("store");
        ProcessResult import = await VesselCli.RunAsync(cts.Token, "blocks", "import", image, "--store", store);
        Assert.True(import.ExitCode == 0, import.StandardError);
        string fifo = _dir.Combine("flat");
        (await ExternalProcess.RunAsync("mkfifo", [fifo], cts.Token)).EnsureSuccess();
        AssertRefused(await VesselCli.RunAsync(cts.Token, "blocks", "flatten", import.StandardOutput.Trim(), fifo, "--store", store), "is a FIFO");
        Assert.Equal(0x1000, UnixFile.TypeOf(fifo));
    }
}
