using System.Text.RegularExpressions;

namespace Vessel.IntegrationTests.Sandboxes;

/// <summary>
/// <c>vessel sandbox run SOURCE</c> through the real CLI: an image source is built into a
/// rootfs cached in the Vessel home's images/ and booted; anything that is neither an ext4 image
/// nor an image is refused before a VM (or the kit) is touched.
/// </summary>
[Collection(SandboxCollection.Name)]
public sealed class SandboxSourceTests(SandboxEnvironment env)
{
    private static Task<ProcessResult> CliAsync(params string[] args) =>
        ExternalProcess.RunAsync("dotnet", [VesselCli.DllPath, .. args], CancellationToken.None, timeout: TimeSpan.FromMinutes(4));

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 120_000)]
    public async Task Random_bytes_are_refused_in_under_3_seconds_before_any_vm_starts()
    {
        string noise = env.Work!.Combine("noise.img");
        byte[] data = new byte[4 << 20];
        new Random(5).NextBytes(data);
        data[0] = 0; // never a gzip magic by chance
        await File.WriteAllBytesAsync(noise, data);
        string home = env.Work.Combine("refused-home");

        var clock = Stopwatch.StartNew();
        ProcessResult r = await CliAsync("sandbox", "run", "--home", home, noise, "--", "true");
        TimeSpan took = clock.Elapsed;

        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("is not an ext4 image (no ext4 superblock magic 0xEF53 at byte 1080) and not a container image", r.StandardError, StringComparison.Ordinal);
        Assert.True(took < TimeSpan.FromSeconds(3), $"refusing random bytes took {took.TotalSeconds:F2} s (CLI start included)");
        Assert.False(Directory.Exists(home), "the Vessel home was created: the kit, the image cache or the sandbox manager ran");
        Assert.Empty(SandboxEnvironment.QemusNaming(home));
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 600_000)]
    public async Task A_tarball_source_runs_and_its_rootfs_is_built_once_then_taken_from_the_cache()
    {
        // The environment's state directory is the home: its sandboxes/ is checked for leftovers, its kits/ is built once.
        string home = env.StateDirectory;
        string tarball = TestImages.BusyboxTarball;

        ProcessResult first = await CliAsync("sandbox", "run", "--home", home, tarball, "--", "sh", "-c", "cat /etc/vessel-test-release; exit 5");
        Assert.True(first.ExitCode == 5, $"exit {first.ExitCode}: {first.StandardError}");
        Assert.Equal(TestImages.BusyboxRelease, first.StandardOutput);
        Match built = Regex.Match(first.StandardError, @"rootfs built: (\S+\.ext4) ");
        Assert.True(built.Success, first.StandardError);
        string cached = built.Groups[1].Value;
        Assert.Equal(Path.Combine(home, "images"), Path.GetDirectoryName(cached));
        (long Inode, DateTime Written) identity = await IdentityAsync(cached);

        ProcessResult second = await CliAsync("sandbox", "run", "--home", home, tarball, "--", "sh", "-c", "echo again > /root/x; exit 5");
        Assert.True(second.ExitCode == 5, $"exit {second.ExitCode}: {second.StandardError}");
        Assert.Contains("rootfs cached: " + cached, second.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("rootfs built", second.StandardError, StringComparison.Ordinal);
        Assert.Equal(identity, await IdentityAsync(cached));
        Assert.Null(await E2fs.CheckAsync(cached)); // the sandbox wrote to its own copy, never to the cache
        Assert.DoesNotContain("x", (await E2fs.DebugfsAsync(cached, "ls -p /root")).Split('/'));
        env.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task An_oci_layout_source_runs()
    {
        ProcessResult r = await CliAsync("sandbox", "run", "--home", env.StateDirectory, TestImages.BusyboxOciReference,
            "--", "cat", "/etc/vessel-test-release");
        Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}: {r.StandardError}");
        Assert.Equal(TestImages.BusyboxRelease, r.StandardOutput);
        env.AssertNothingLeft();
    }

    private static async Task<(long Inode, DateTime Written)> IdentityAsync(string path)
    {
        string stat = (await ExternalProcess.RunAsync("stat", ["-c", "%i", path], CancellationToken.None)).EnsureSuccess().StandardOutput;
        return (long.Parse(stat.Trim(), System.Globalization.CultureInfo.InvariantCulture), File.GetLastWriteTimeUtc(path));
    }
}
