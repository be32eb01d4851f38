using Vessel.IntegrationTests.Sandboxes;

namespace Vessel.IntegrationTests.Hardening;

/// <summary>
/// Reclaim around VM template builds with the real CLI (issue 18, item 3): a <c>kill -9</c> during
/// a RUN step takes its QEMU along (pdeathsig) and <c>vessel sandbox sweep</c> reclaims the work
/// cache and fails the build's row; a <c>--no-cache</c> rebuild removes the snapshot it replaced
/// once no live sandbox maps it, and <c>vessel gc</c> never takes what a running sandbox uses.
/// </summary>
public sealed class GcVmTests : IDisposable
{
    // Short: unix socket paths under the home must stay under 108 bytes.
    private readonly TempDirectory _dir = TempDirectory.Create("vgv-", "/tmp");

    public void Dispose() => _dir.Dispose();

    /// <summary>Reads <paramref name="reader"/> until a line ends with <paramref name="marker"/> (output, not the step's title); fails if the process ends first.</summary>
    private static async Task WaitForLineAsync(Process process, StreamReader reader, string marker, CancellationToken ct)
    {
        var seen = new System.Text.StringBuilder();
        while (await reader.ReadLineAsync(ct) is string line)
        {
            seen.AppendLine(line);
            if (line.EndsWith(marker, StringComparison.Ordinal))
            {
                return;
            }
        }
        await process.WaitForExitAsync(ct);
        Assert.Fail($"the process ended (exit {process.ExitCode}) before it printed '{marker}':\n{seen}");
    }

    private static async Task<string> CliAsync(CancellationToken ct, params string[] args)
    {
        ProcessResult r = await VesselCli.RunAsync(ct, args);
        Assert.True(r.ExitCode == 0, $"vessel {string.Join(' ', args)}: exit {r.ExitCode}: {r.StandardError}");
        return r.StandardOutput + r.StandardError;
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "nbdfuse", "fusermount3", "setpriv", "root", Timeout = 600_000)]
    public async Task Kill_9_during_a_run_step_takes_the_vm_along_and_sweep_reclaims_the_work_cache_and_fails_the_build()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        CancellationToken ct = cts.Token;
        string home = _dir.Combine("h");
        string spec = TestImages.WriteTemplateSpec(_dir.Combine("k9.json"), "k9", """ "steps": [ { "run": "echo in-the-run-step; sleep 600" } ] """);
        string work = Path.Combine(home, "work");
        using (Process cli = VesselCli.Start("template", "build", "-f", spec, "--home", home))
        {
            try
            {
                Task<string> stdout = cli.StandardOutput.ReadToEndAsync(ct);
                await WaitForLineAsync(cli, cli.StandardError, "s in-the-run-step", ct);
                StateStore running = await StateStore.OpenAsync(Path.Combine(home, "state.db"), ct);
                Assert.Equal(["running"], (await running.ListBuildsAsync("k9", ct)).Select(b => b.Status));
                Assert.NotEmpty(SandboxEnvironment.QemusNaming(home + "/"));
                cli.Kill(); // SIGKILL: no cleanup runs in the CLI
                await cli.WaitForExitAsync(ct);
                _ = await stdout;
            }
            finally
            {
                KillIfRunning(cli);
            }
        }
        // The parent-death signal takes QEMU down with the CLI.
        for (int i = 0; i < 100 && SandboxEnvironment.QemusNaming(home + "/").Count > 0; i++)
        {
            await Task.Delay(100, ct);
        }
        Assert.Empty(SandboxEnvironment.QemusNaming(home + "/"));
        Assert.Contains(Directory.EnumerateFiles(work), f => f.EndsWith(".cache", StringComparison.Ordinal));
        Assert.NotEmpty(Directory.GetDirectories(Path.Combine(home, "sandboxes")));

        string sweep = await CliAsync(ct, "sandbox", "sweep", "--home", home);
        Assert.Contains("marked 1 build of dead processes as failed", sweep, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(work));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(home, "sandboxes")));
        Assert.DoesNotContain(home, File.ReadAllText("/proc/self/mountinfo"), StringComparison.Ordinal);
        StateStore state = await StateStore.OpenAsync(Path.Combine(home, "state.db"), ct);
        BuildRecord build = Assert.Single(await state.ListBuildsAsync("k9", ct));
        Assert.Equal("failed", build.Status);
        Assert.Contains("killed or crashed", build.Error, StringComparison.Ordinal);
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "nbdfuse", "fusermount3", "setpriv", "root", Timeout = 900_000)]
    public async Task A_no_cache_rebuild_and_gc_keep_the_snapshot_a_live_sandbox_maps_and_remove_it_after()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        CancellationToken ct = cts.Token;
        string home = _dir.Combine("h");
        string spec = TestImages.WriteTemplateSpec(_dir.Combine("snap.json"), "snap",
            """ "steps": [ { "run": "echo baked > /baked.txt" } ], "start": "sleep 100000", "ready": "pidof sleep" """);
        await CliAsync(ct, "template", "build", "-f", spec, "--home", home);
        StateStore state = await StateStore.OpenAsync(Path.Combine(home, "state.db"), ct);
        TemplateRecord first = (await state.GetTemplateAsync("snap", ct))!;
        Assert.True(Directory.Exists(first.SnapshotDirectory));

        // A sandbox resumed from the first snapshot, alive while the template is rebuilt and gc runs.
        using Process live = VesselCli.Start("template", "run", "snap", "--home", home, "--", "sh", "-c", "echo up; sleep 600");
        try
        {
            await WhileALiveSandboxMapsTheFirstSnapshotAsync(live, home, spec, state, first, ct);
        }
        finally
        {
            KillIfRunning(live);
        }
        TemplateRecord second = (await state.GetTemplateAsync("snap", ct))!;

        // The template still starts from its (second) snapshot after gc.
        ProcessResult run = await VesselCli.RunAsync(ct, "template", "run", "snap", "--home", home, "--timings", "--", "cat", "/baked.txt");
        Assert.True(run.ExitCode == 0, run.StandardError);
        Assert.Equal("baked\n", run.StandardOutput);
        Assert.Contains("restored from snapshot", run.StandardError, StringComparison.Ordinal);

        // With no sandbox on it, the rebuild removes the snapshot it replaces itself.
        string third = await CliAsync(ct, "template", "build", "-f", spec, "--home", home, "--no-cache");
        Assert.Contains($"removed the replaced snapshot {second.SnapshotDirectory}", third, StringComparison.Ordinal);
        Assert.False(Directory.Exists(second.SnapshotDirectory));
        Assert.Single(Directory.GetDirectories(Path.Combine(home, "snapshots")));
        Assert.Empty(SandboxEnvironment.QemusNaming(home + "/"));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(home, "sandboxes")));
    }

    /// <summary>A --no-cache rebuild and gc keep what the live sandbox maps; once it ends (SIGTERM: 143), gc removes it.</summary>
    private static async Task WhileALiveSandboxMapsTheFirstSnapshotAsync(Process live, string home, string spec, StateStore state, TemplateRecord first, CancellationToken ct)
    {
        Task<string> liveErr = live.StandardError.ReadToEndAsync(ct);
        await WaitForLineAsync(live, live.StandardOutput, "up", ct);
        string rebuilt = await CliAsync(ct, "template", "build", "-f", spec, "--home", home, "--no-cache");
        Assert.Contains($"the replaced snapshot {first.SnapshotDirectory} is still in use", rebuilt, StringComparison.Ordinal);
        Assert.NotEqual(first.SnapshotDirectory, (await state.GetTemplateAsync("snap", ct))!.SnapshotDirectory);
        string whileLive = await CliAsync(ct, "gc", "--home", home);
        Assert.DoesNotContain(first.SnapshotDirectory!, whileLive, StringComparison.Ordinal);
        Assert.DoesNotContain(first.LayerBuildId.ToString(), whileLive, StringComparison.Ordinal);
        Assert.True(Directory.Exists(first.SnapshotDirectory));

        (await ExternalProcess.RunAsync("kill", ["-TERM", live.Id.ToString(CultureInfo.InvariantCulture)], ct)).EnsureSuccess();
        await live.WaitForExitAsync(ct);
        Assert.True(live.ExitCode == 143, $"exit {live.ExitCode}: {await liveErr}");
        string after = await CliAsync(ct, "gc", "--home", home);
        Assert.Contains("removed  snapshot", after, StringComparison.Ordinal);
        Assert.Contains(first.SnapshotDirectory!, after, StringComparison.Ordinal);
        Assert.Contains(first.LayerBuildId.ToString(), after, StringComparison.Ordinal);
        Assert.False(Directory.Exists(first.SnapshotDirectory));
    }

    /// <summary>A CLI a failed assertion left running is killed (its QEMU follows by the parent-death signal).</summary>
    private static void KillIfRunning(Process process)
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(10_000);
        }
    }
}
