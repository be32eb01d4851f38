namespace Vessel.IntegrationTests.Sandboxes;

[Collection(SandboxCollection.Name)]
public sealed class SandboxLifecycleTests(SandboxEnvironment env)
{
    private static async Task<string> OutputAsync(Sandbox sandbox, params string[] argv)
    {
        using var stdout = new MemoryStream();
        ExitStatus status = await sandbox.ExecAsync(new ExecRequest(argv), null, stdout, null, CancellationToken.None);
        Assert.Equal(0, status.ExitCode);
        return Encoding.UTF8.GetString(stdout.ToArray());
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "debugfs", Timeout = 300_000)]
    public async Task Pre_boot_hooks_set_reserved_blocks_and_change_the_rootfs_before_boot()
    {
        string? reservedSeen = null;
        var writeMarker = new PreBootHook("write-marker", async (ctx, ct) =>
        {
            ProcessResult info = (await ExternalProcess.RunAsync("tune2fs", ["-l", ctx.RootfsPath], ct)).EnsureSuccess();
            reservedSeen = info.StandardOutput.Split('\n').First(l => l.StartsWith("Reserved block count:", StringComparison.Ordinal));
            string marker = Path.Combine(ctx.WorkDirectory, "marker.txt");
            await File.WriteAllTextAsync(marker, "written by a pre-boot hook\n", ct);
            (await ExternalProcess.RunAsync("debugfs", ["-w", "-R", $"write {marker} /hook-marker.txt", ctx.RootfsPath], ct)).EnsureSuccess();
        });
        await using (Sandbox sandbox = await env.Manager.CreateAsync(new SandboxOptions
        {
            RootfsPath = env.RootfsPath,
            ReservedBytes = 16L << 20,
            PreBootHooks = [writeMarker],
        }, CancellationToken.None))
        {
            Assert.Equal("written by a pre-boot hook\n", await OutputAsync(sandbox, "cat", "/hook-marker.txt"));
        }
        Assert.Equal("Reserved block count:     4096", reservedSeen);
        env.AssertNothingLeft();
        // The original image is untouched: the sandbox worked on its own copy.
        ProcessResult original = await ExternalProcess.RunAsync("debugfs", ["-R", "stat /hook-marker.txt", env.RootfsPath], CancellationToken.None);
        Assert.Contains("not found", original.StandardError + original.StandardOutput, StringComparison.OrdinalIgnoreCase);
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 120_000)]
    public async Task A_failing_hook_aborts_creation_and_leaves_nothing_behind()
    {
        var failing = new PreBootHook("always-fails", (_, _) => throw new InvalidOperationException("hook says no"));
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => env.Manager.CreateAsync(new SandboxOptions
        {
            RootfsPath = env.RootfsPath,
            PreBootHooks = [failing],
        }, CancellationToken.None));
        Assert.Contains("always-fails", e.Message, StringComparison.Ordinal);
        Assert.Contains("hook says no", e.Message, StringComparison.Ordinal);
        env.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task Rootfs_served_over_nbd_boots()
    {
        // The disk comes from Vessel's own NBD server, in this process, as sandboxes will use it.
        using TempDirectory nbd = TempDirectory.Create("vnbd-", "/tmp");
        string socket = nbd.Combine("nbd.sock");
        string image = nbd.Combine("disk.ext4");
        File.Copy(env.RootfsPath, image);
        using (var device = Vessel.Blocks.FlatFileDevice.Open(image, readOnly: false))
        {
            await using var server = new Vessel.Nbd.NbdServer(new Vessel.Nbd.NbdServerOptions { UnixSocketPath = socket });
            server.AddExport("rootfs", device);
            await server.StartAsync(CancellationToken.None);
            await using Sandbox sandbox = await env.Manager.CreateAsync(new SandboxOptions
            {
                RootfsPath = env.RootfsPath,
                CopyRootfs = false,
                DiskOverride = DiskConfig.Nbd(socket, "rootfs"),
            }, CancellationToken.None);
            Assert.Equal(TestImages.BusyboxRelease, await OutputAsync(sandbox, "cat", "/etc/vessel-test-release"));
            await OutputAsync(sandbox, "sh", "-c", "echo over-nbd > /root/nbd.txt && sync");
        }
        Assert.False(File.Exists(socket), "the server removes its socket");
        ProcessResult written = (await ExternalProcess.RunAsync("debugfs", ["-R", "cat /root/nbd.txt", image], CancellationToken.None)).EnsureSuccess();
        Assert.Equal("over-nbd\n", written.StandardOutput);
        env.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 120_000)]
    public async Task Sweep_kills_the_vmm_and_removes_the_directory_of_a_crashed_run()
    {
        // A crashed run: its owner process is gone, its QEMU still runs (paused, -S) with sockets in its directory.
        string dir = Path.Combine(env.StateDirectory, "sandboxes", "sb-crashed0001");
        Directory.CreateDirectory(dir);
        using (Process dead = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!)
        {
            await dead.WaitForExitAsync();
            await File.WriteAllTextAsync(Path.Combine(dir, "owner"), $"{dead.Id} 1");
        }
        var psi = new ProcessStartInfo(ExternalProcess.ResolveTool("qemu-system-x86_64")) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string a in new[] { "-M", "microvm", "-accel", "tcg", "-S", "-nodefaults", "-display", "none", "-qmp", $"unix:{dir}/qmp.sock,server=on,wait=off" })
        {
            psi.ArgumentList.Add(a);
        }
        using Process qemu = Process.Start(psi)!;
        await File.WriteAllTextAsync(Path.Combine(dir, "vmm.pid"), qemu.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));

        IReadOnlyList<string> swept = await SandboxManager.SweepDirectoryAsync(env.StateDirectory, CancellationToken.None);

        Assert.Equal(["sb-crashed0001"], swept);
        Assert.True(qemu.WaitForExit(10_000));
        Assert.False(Directory.Exists(dir));
        env.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task Cli_sandbox_run_streams_output_and_exits_with_the_command_code()
    {
        ProcessResult r = await ExternalProcess.RunAsync("dotnet", [VesselCli.DllPath, "sandbox", "run", "--state", env.StateDirectory, env.RootfsPath, "--", "sh", "-c", "echo out; echo err >&2; exit 5"],
            CancellationToken.None, timeout: TimeSpan.FromMinutes(4));
        Assert.Equal(5, r.ExitCode);
        Assert.Equal("out\n", r.StandardOutput);
        Assert.Contains("err\n", r.StandardError, StringComparison.Ordinal);
        env.AssertNothingLeft();
    }
}
