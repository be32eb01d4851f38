using static Vessel.IntegrationTests.Sandboxes.SandboxShell;

namespace Vessel.IntegrationTests.Guest;

/// <summary>
/// The guest kit on real QEMU: a small initramfs and the read-only kit disk, guests that boot and
/// run at 128 MiB, every failed guest stage reported by name with the console, QEMU failures
/// quoted, QEMU dying with its owner, and the guest clock following the host's.
/// </summary>
[Collection(GuestKitCollection.Name)]
public sealed class GuestKitTests(GuestKitEnvironment env)
{
    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", "e2fsck", Timeout = 300_000)]
    public async Task The_initramfs_holds_no_agent_and_the_kit_disk_is_a_clean_ext4_with_it()
    {
        GuestKit kit = env.Kit!;
        long initramfs = new FileInfo(kit.InitramfsPath).Length;
        Assert.True(initramfs <= KitBuilder.MaxInitramfsBytes, $"initramfs is {initramfs} bytes");
        ProcessResult check = await ExternalProcess.RunAsync("e2fsck", ["-fn", kit.KitDiskPath], CancellationToken.None);
        Assert.True(check.Succeeded, check.StandardOutput + check.StandardError);
        ProcessResult agent = (await ExternalProcess.RunAsync("debugfs", ["-R", "stat /agent/vessel-agent", kit.KitDiskPath], CancellationToken.None)).EnsureSuccess();
        Assert.Contains("Mode:  0755", agent.StandardOutput, StringComparison.Ordinal);
        // Loaded again, every asset (the kit disk too) is checked against the manifest.
        Assert.Equal(kit.Manifest.KitDiskSha256, GuestKit.Load(kit.Directory).Manifest.KitDiskSha256);
    }

    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", Timeout = 300_000)]
    public async Task A_sandbox_boots_and_runs_at_128_MiB_with_lo_up_and_the_kit_disk_read_only()
    {
        await using (Sandbox sandbox = await env.Manager.CreateAsync(new SandboxOptions { RootfsPath = env.RootfsPath, MemoryMiB = 128 }, CancellationToken.None))
        {
            (int code, string output) = await ExecAsync(sandbox, "awk '/MemTotal/ {print $2}' /proc/meminfo; cat /sys/class/net/lo/operstate; exit 5");
            Assert.Equal(5, code);
            string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.InRange(long.Parse(lines[0], CultureInfo.InvariantCulture), 80_000, 131_072);
            Assert.Equal("unknown", lines[1]); // lo is up (operstate "unknown" for loopback); "down" otherwise
        }
        env.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", Timeout = 60_000)]
    public async Task Memory_below_the_kit_minimum_is_refused_before_boot_naming_the_minimum()
    {
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => env.Manager.CreateAsync(new SandboxOptions { RootfsPath = env.RootfsPath, MemoryMiB = 64 }, CancellationToken.None));
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
        Assert.Contains($"minimum of {GuestKit.MinimumMemoryMiB} MiB", e.Message, StringComparison.Ordinal);
        string sandboxes = new VesselHome(env.StateDirectory).Sandboxes;
        Assert.False(Directory.Exists(sandboxes) && Directory.GetFileSystemEntries(sandboxes).Length > 0);
        env.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", Timeout = 300_000)]
    public async Task A_rootfs_that_is_not_ext4_fails_at_the_root_mount_stage_with_the_console_quoted()
    {
        string random = env.Work!.Combine("random.img");
        await File.WriteAllBytesAsync(random, System.Security.Cryptography.RandomNumberGenerator.GetBytes(8 << 20));
        var clock = Stopwatch.StartNew();
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => env.Manager.CreateAsync(new SandboxOptions { RootfsPath = random }, CancellationToken.None));
        Assert.Contains("stage 'root-mount'", e.Message, StringComparison.Ordinal);
        Assert.Contains("Console:", e.Message, StringComparison.Ordinal);
        Assert.Contains("vessel-init: stage=root-mount failed", e.Message, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(100), $"took {clock.Elapsed}");
        env.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", Timeout = 300_000)]
    public async Task A_kit_disk_that_does_not_mount_fails_at_the_kit_mount_stage()
    {
        // A copy of the kit whose disk is zeros: not ext4 (GuestKit.Load would refuse it; the record is built directly).
        using TempDirectory broken = TempDirectory.Create("vgk-kit-", "/tmp");
        foreach (string f in Directory.GetFiles(env.Kit!.Directory))
        {
            File.Copy(f, broken.Combine(Path.GetFileName(f)));
        }
        await File.WriteAllBytesAsync(broken.Combine(env.Kit.Manifest.KitDisk!), new byte[1 << 20]);
        var manager = new SandboxManager(env.StateDirectory, new GuestKit(broken.Path, env.Kit.Manifest));
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => manager.CreateAsync(new SandboxOptions { RootfsPath = env.RootfsPath }, CancellationToken.None));
        Assert.Contains("stage 'kit-mount'", e.Message, StringComparison.Ordinal);
        Assert.Contains("/vessel/kit", e.Message, StringComparison.Ordinal);
        env.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", Timeout = 120_000)]
    public async Task A_guest_that_does_not_reach_its_agent_in_time_times_out_naming_its_last_stage()
    {
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => env.Manager.CreateAsync(
            new SandboxOptions { RootfsPath = env.RootfsPath, BootTimeout = TimeSpan.FromSeconds(1) }, CancellationToken.None));
        Assert.Equal(VesselErrorReason.Timeout, e.Reason);
        Assert.Contains("did not reach its agent within 1 s", e.Message, StringComparison.Ordinal);
        Assert.Contains("Console:", e.Message, StringComparison.Ordinal);
        env.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", Timeout = 60_000)]
    public async Task When_QEMU_fails_at_start_the_error_quotes_its_stderr_and_exit_status()
    {
        using TempDirectory dir = TempDirectory.Create("vgk-q-", "/tmp");
        var config = new VmConfig
        {
            KernelPath = dir.Combine("no-such-kernel"),
            InitramfsPath = env.Kit!.InitramfsPath,
            ControlSocketPath = dir.Combine("ctl.sock"),
            ApiSocketPath = dir.Combine("qmp.sock"),
            ConsoleLogPath = dir.Combine("console.log"),
            Acceleration = Acceleration.Tcg,
        };
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => new QemuDriver().StartAsync(config, CancellationToken.None));
        Assert.Contains("exited with status 1", e.Message, StringComparison.Ordinal);
        Assert.Contains("no-such-kernel", e.Message, StringComparison.Ordinal);
    }

    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", Timeout = 300_000)]
    public async Task Killing_the_cli_with_sigkill_takes_its_qemu_with_it()
    {
        string state = env.Work!.Combine("kill-home");
        Directory.CreateDirectory(state);
        // The CLI finds the kit the environment built in its home's kits/ (no second kernel download).
        Directory.CreateSymbolicLink(Path.Combine(state, "kits"), Path.GetDirectoryName(Path.GetDirectoryName(env.Kit!.Directory))!);
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { VesselCli.DllPath, "sandbox", "run", "--home", state, env.RootfsPath, "--", "sh", "-c", "echo started; sleep 600" })
        {
            psi.ArgumentList.Add(a);
        }
        using Process cli = Process.Start(psi)!;
        var stderr = new StringBuilder();
        cli.ErrorDataReceived += (_, a) => stderr.AppendLine(a.Data);
        cli.BeginErrorReadLine();
        // Wait for the command to run in the guest: QEMU is up and the agent answered.
        using var started = new CancellationTokenSource(TimeSpan.FromSeconds(240));
        while (await cli.StandardOutput.ReadLineAsync(started.Token) is { } line && line != "started")
        {
        }
        IReadOnlyList<int> qemus = GuestKitEnvironment.QemusNaming(state);
        Assert.Single(qemus);
        (await ExternalProcess.RunAsync("kill", ["-9", cli.Id.ToString(CultureInfo.InvariantCulture)], CancellationToken.None)).EnsureSuccess();
        await cli.WaitForExitAsync();
        var deadline = Stopwatch.StartNew();
        while (GuestKitEnvironment.QemusNaming(state).Count > 0 && deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(100);
        }
        Assert.Empty(GuestKitEnvironment.QemusNaming(state));
        // What the dead run left (its directory) is for sweep; its VMM is already gone.
        await SandboxManager.SweepDirectoryAsync(state, CancellationToken.None);
    }

    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", Timeout = 300_000)]
    public async Task The_guest_clock_is_the_hosts_and_drifts_less_than_a_thousandth_over_20_seconds()
    {
        await using (Sandbox sandbox = await env.Manager.CreateAsync(new SandboxOptions { RootfsPath = env.RootfsPath }, CancellationToken.None))
        {
            (double guest0, double host0, double error0) = await ClockPairAsync(sandbox);
            // Set at boot from the host: the clocks agree to well under a second.
            Assert.InRange(guest0 - host0, -0.5, 0.5);
            await Task.Delay(TimeSpan.FromSeconds(20));
            (double guest1, double host1, double error1) = await ClockPairAsync(sandbox);
            // The least drift the samples allow: their round trips bound how well each pair is known.
            double drift = Math.Max(0, Math.Abs((guest1 - guest0) - (host1 - host0)) - error0 - error1) / (host1 - host0);
            Assert.True(drift < 0.001, $"guest {guest1 - guest0:F3} s vs host {host1 - host0:F3} s (± {error0 + error1:F3} s): drift {drift:P3}");
        }
        env.AssertNothingLeft();
    }

    /// <summary>
    /// The guest's wall clock (busybox adjtimex: microseconds; busybox date has no %N) and the
    /// host's at the middle of that exec's round trip, from the best of five tries, with the
    /// uncertainty (half the round trip).
    /// </summary>
    private static async Task<(double Guest, double Host, double Uncertainty)> ClockPairAsync(Sandbox sandbox)
    {
        (double Guest, double Host, double Uncertainty) best = (0, 0, double.MaxValue);
        for (int i = 0; i < 5; i++)
        {
            long before = Stopwatch.GetTimestamp();
            DateTimeOffset hostBefore = DateTimeOffset.UtcNow;
            (int code, string output) = await ExecAsync(sandbox, "busybox adjtimex | awk '/tv_sec/ {s=$2} /tv_usec/ {u=$2} END {printf \"%d.%06d\\n\", s, u}'");
            double roundTrip = Stopwatch.GetElapsedTime(before).TotalSeconds;
            Assert.True(code == 0, output);
            if (roundTrip / 2 < best.Uncertainty)
            {
                double host = (hostBefore - DateTimeOffset.UnixEpoch).TotalSeconds + roundTrip / 2;
                best = (double.Parse(output.Trim(), CultureInfo.InvariantCulture), host, roundTrip / 2);
            }
        }
        return best;
    }
}
