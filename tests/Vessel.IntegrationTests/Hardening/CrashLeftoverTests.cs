namespace Vessel.IntegrationTests.Hardening;

/// <summary>
/// <c>kill -9</c> of the real CLI, then the next run reclaims what it left (issue 18, item 3).
/// </summary>
public sealed class CrashLeftoverTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-crash-it-");

    public void Dispose() => _dir.Dispose();

    private static string[] Partials(string dir) => Directory.EnumerateFiles(dir)
        .Where(f => Path.GetFileName(f).StartsWith('.') && f.EndsWith(".partial", StringComparison.Ordinal)).ToArray();

    [RequiresFact("e2fsck", Timeout = 240_000)]
    public async Task A_rootfs_build_killed_mid_write_leaves_a_partial_that_the_next_build_reclaims()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(220));
        // Incompressible data, so that the build is busy writing for a while.
        string big = _dir.Combine("big.tar");
        var rnd = new Random(5);
        byte[] chunk = new byte[8 << 20];
        File.WriteAllBytes(big, LayersImageSource.Tar(w =>
        {
            for (int i = 0; i < 24; i++)
            {
                rnd.NextBytes(chunk);
                LayersImageSource.File(w, $"data/{i}.bin", Convert.ToBase64String(chunk));
            }
        }));
        string outDir = _dir.Combine("out");
        Directory.CreateDirectory(outDir);
        string output = Path.Combine(outDir, "rootfs.ext4");

        using (Process cli = VesselCli.Start("rootfs", "build", big, "-o", output))
        {
            Task<string> stderr = cli.StandardError.ReadToEndAsync(cts.Token);
            Task<string> stdout = cli.StandardOutput.ReadToEndAsync(cts.Token);
            // Wait until the partial file exists and the build is writing it, then SIGKILL: no cleanup runs.
            while (Partials(outDir).Length == 0)
            {
                if (cli.HasExited)
                {
                    Assert.Fail($"the build ended (exit {cli.ExitCode}) before it wrote anything: {await stderr} {await stdout}");
                }
                await Task.Delay(10, cts.Token);
            }
            // Kill at once: on a quiet machine the rest of the write can take well under 200 ms.
            cli.Kill();
            await cli.WaitForExitAsync(cts.Token);
            Assert.False(File.Exists(output), $"the build finished before it could be killed: {await stderr}");
        }
        string[] left = Partials(outDir);
        Assert.Single(left);
        Assert.False(File.Exists(output));

        // The next build into that directory removes it (its owner is gone) and succeeds.
        string small = _dir.Combine("small.tar");
        File.WriteAllBytes(small, LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/hostname", "next\n")));
        ProcessResult next = await VesselCli.RunAsync(cts.Token, "rootfs", "build", small, "-o", output, "--size", "64M");
        Assert.True(next.ExitCode == 0, next.StandardError);
        Assert.Empty(Partials(outDir));
        Assert.Null(await E2fs.CheckAsync(output));
    }

    /// <summary>
    /// A template build (no VM: COPY through nbdfuse and debugfs) killed while its step's
    /// overlay cache is open: <c>vessel sandbox sweep</c> reclaims the first, the next build the second.
    /// </summary>
    [RequiresFact("nbdfuse", "debugfs", "e2fsck", Timeout = 480_000)]
    public async Task A_template_build_killed_mid_step_is_reclaimed_by_sweep_and_by_the_next_build()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(7));
        string home = _dir.Combine("home");
        string app = _dir.Combine("app");
        Directory.CreateDirectory(app);
        var rnd = new Random(9);
        byte[] data = new byte[16 << 20];
        for (int i = 0; i < 4; i++)
        {
            rnd.NextBytes(data);
            await File.WriteAllBytesAsync(Path.Combine(app, $"blob{i}.bin"), data, cts.Token);
        }
        string base_ = _dir.Combine("base.tar");
        File.WriteAllBytes(base_, LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/hostname", "crash\n")));
        string spec = _dir.Combine("spec.json");
        File.WriteAllText(spec, $$"""
            { "name": "crash", "from": "tarball:{{base_}}", "diskSize": "256M",
              "steps": [ { "copy": { "src": "app", "dest": "/app" } } ] }
            """);
        string work = Path.Combine(home, "work");

        await KillDuringStepAsync(spec, home, work, cts.Token);
        ProcessResult sweep = await VesselCli.RunAsync(cts.Token, "sandbox", "sweep", "--state", home);
        Assert.True(sweep.ExitCode == 0, sweep.StandardError);
        Assert.Contains("marked 1 build of dead processes as failed", sweep.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain(Directory.GetFiles(work), f => f.EndsWith(".cache", StringComparison.Ordinal));
        await AssertBuildsAsync(home, ["failed"], cts.Token);
        AssertNoMountsOrDirectories(home, work);

        await KillDuringStepAsync(spec, home, work, cts.Token);
        ProcessResult next = await VesselCli.RunAsync(cts.Token, "template", "build", "-f", spec, "--home", home, "--no-vm");
        Assert.True(next.ExitCode == 0, next.StandardError);
        Assert.DoesNotContain(Directory.GetFiles(work), f => f.EndsWith(".cache", StringComparison.Ordinal));
        await AssertBuildsAsync(home, ["failed", "failed", "succeeded"], cts.Token);
        AssertNoMountsOrDirectories(home, work);
    }

    private static async Task KillDuringStepAsync(string spec, string home, string work, CancellationToken ct)
    {
        using Process cli = VesselCli.Start("template", "build", "-f", spec, "--home", home, "--no-vm");
        Task<string> stderr = cli.StandardError.ReadToEndAsync(ct);
        Task<string> stdout = cli.StandardOutput.ReadToEndAsync(ct);
        while (!Directory.Exists(work) || !Directory.EnumerateFiles(work).Any(f => f.EndsWith(".cache", StringComparison.Ordinal)))
        {
            if (cli.HasExited)
            {
                Assert.Fail($"the build ended (exit {cli.ExitCode}) before its step opened a cache: {await stderr} {await stdout}");
            }
            await Task.Delay(10, ct);
        }
        await Task.Delay(300, ct);
        cli.Kill(); // SIGKILL: the process tree's nbdfuse is left to the kernel and to the next run
        await cli.WaitForExitAsync(ct);
        Assert.Contains(Directory.EnumerateFiles(work), f => f.EndsWith(".cache", StringComparison.Ordinal));
    }

    /// <summary>The killed nbdfuse's mount (dead: "Transport endpoint is not connected") is detached and its directory gone.</summary>
    private static void AssertNoMountsOrDirectories(string home, string work)
    {
        Assert.DoesNotContain(home, File.ReadAllText("/proc/self/mountinfo"), StringComparison.Ordinal);
        Assert.Empty(Directory.GetDirectories(work));
    }

    private static async Task AssertBuildsAsync(string home, string[] statuses, CancellationToken ct)
    {
        Vessel.State.StateStore state = await Vessel.State.StateStore.OpenAsync(Path.Combine(home, "state.db"), ct);
        var builds = await state.ListBuildsAsync("crash", ct);
        Assert.Equal(statuses, builds.Select(b => b.Status));
        foreach (var b in builds.Where(b => b.Status == "failed"))
        {
            Assert.Contains("killed or crashed", b.Error, StringComparison.Ordinal);
        }
    }
}
