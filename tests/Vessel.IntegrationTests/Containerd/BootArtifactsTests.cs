namespace Vessel.IntegrationTests.Containerd;

[Collection(ContainerdCollection.Name)]
public sealed class BootArtifactsTests(ContainerdFixture ctrd) : TimedTestBase(ContainerdFixture.TestTimeout)
{
    [ContainerdFact]
    public async Task View_of_a_single_layer_image_binds_the_files_read_only_and_delete_removes_everything()
    {
        var (bundle, output) = ctrd.NewBundle();
        ArtifactResult result = await BootArtifacts.PrepareAsync(Request(ContainerdFixture.SingleImage, bundle, output, ArtifactMode.View,
            "/boot/vmlinuz", "/boot/initrd.img", "urunc.json", "/vmlinuz", "/escape"), Deadline);

        Assert.Equal(ArtifactMode.View, result.Mode);
        Assert.Null(result.FallbackReason);
        Assert.Equal(ctrd.KernelV1, await File.ReadAllBytesAsync(Path.Combine(output, "boot/vmlinuz"), Deadline));
        Assert.Equal(ctrd.Initrd, await File.ReadAllBytesAsync(Path.Combine(output, "boot/initrd.img"), Deadline));
        Assert.Equal(ctrd.Config, await File.ReadAllBytesAsync(Path.Combine(output, "urunc.json"), Deadline));
        // Symlinks resolve inside the image: /vmlinuz -> boot/vmlinuz; /escape climbs above the root and stops there.
        Assert.Equal(ctrd.KernelV1, await File.ReadAllBytesAsync(Path.Combine(output, "vmlinuz"), Deadline));
        Assert.Equal(ctrd.Config, await File.ReadAllBytesAsync(Path.Combine(output, "escape"), Deadline));
        // A one-layer view is a bind mount; every artifact is a read-only bind.
        Assert.True(LinuxMount.IsMountPoint(Path.Combine(bundle, "vessel-view")));
        Assert.Throws<IOException>(() => File.WriteAllText(Path.Combine(output, "urunc.json"), "x"));
        string leases = (await ctrd.CtrAsync(Deadline, "leases", "ls")).EnsureSuccess().StandardOutput;
        Assert.Contains(result.LeaseId!, leases, StringComparison.Ordinal);
        Assert.Contains("containerd.io/gc.expire=", leases, StringComparison.Ordinal);
        string snapshots = (await ctrd.CtrAsync(Deadline, "snapshots", "ls")).EnsureSuccess().StandardOutput;
        Assert.Contains(result.ViewKey!, snapshots, StringComparison.Ordinal);

        // Task Delete.
        CleanupResult cleanup = await BootArtifacts.CleanupAsync(bundle, null, Deadline);
        Assert.True(cleanup.HadState);
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);
    }

    [ContainerdFact]
    public async Task View_of_a_multi_layer_image_sees_the_top_layer_and_extraction_gives_the_same_bytes()
    {
        string[] files = ["/boot/vmlinuz", "/boot/initrd.img", "/urunc.json", "/kernel"];
        var (bundle, output) = ctrd.NewBundle();
        ArtifactResult view = await BootArtifacts.PrepareAsync(Request(ContainerdFixture.MultiImage, bundle, output, ArtifactMode.View, files), Deadline);
        Assert.Equal(ArtifactMode.View, view.Mode);
        var viewBytes = files.ToDictionary(f => f, f => File.ReadAllBytes(output + f));
        // A deeper view is an overlay mount.
        string mountinfo = await File.ReadAllTextAsync("/proc/self/mountinfo", Deadline);
        Assert.Contains($"{bundle}/vessel-view ro", mountinfo, StringComparison.Ordinal);
        await BootArtifacts.CleanupAsync(bundle, null, Deadline);
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);

        ArtifactResult extract = await BootArtifacts.PrepareAsync(Request(ContainerdFixture.MultiImage, bundle, output, ArtifactMode.Extract, files), Deadline);
        Assert.Equal(ArtifactMode.Extract, extract.Mode);
        foreach (string f in files)
        {
            Assert.Equal(viewBytes[f], await File.ReadAllBytesAsync(output + f, Deadline));
        }
        Assert.Equal(ctrd.KernelV2, viewBytes["/boot/vmlinuz"]);
        Assert.Equal(ctrd.KernelV2, viewBytes["/kernel"]);
        Assert.Equal(ctrd.Initrd, viewBytes["/boot/initrd.img"]);
        Assert.Equal(ctrd.Config, viewBytes["/urunc.json"]);
        // Extraction wrote only the requested files.
        Assert.Equal(files.Select(f => output + f).Order(StringComparer.Ordinal),
            Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal));
        await BootArtifacts.CleanupAsync(bundle, null, Deadline);
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);
    }

    [RequiresTheory("root", "containerd", "ctr", "umoci", "skopeo", Timeout = ContainerdFixture.TestTimeout)]
    [InlineData("view")]
    [InlineData("extract")]
    public async Task A_missing_or_whited_out_artifact_fails_naming_the_file_and_the_image_and_leaves_nothing(string mode)
    {
        var (bundle, output) = ctrd.NewBundle();
        foreach (string missing in new[] { "/boot/old-initrd", "/boot/nope", "/passwd-of-host" })
        {
            ProcessResult run = await Artifacts(Deadline, ContainerdFixture.MultiImage, bundle, output, mode, "/boot/vmlinuz", missing);
            Assert.Equal(1, run.ExitCode);
            Assert.Contains(missing, run.StandardError, StringComparison.Ordinal);
            Assert.Contains(ContainerdFixture.MultiImage, run.StandardError, StringComparison.Ordinal);
            await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);
        }

        // A symlink to /etc/passwd means the image's /etc/passwd, which this image lacks: never the host's.
        var (bundle2, output2) = ctrd.NewBundle();
        var e = await Assert.ThrowsAsync<VesselException>(() => BootArtifacts.PrepareAsync(
            Request(ContainerdFixture.SingleImage, bundle2, output2, mode == "view" ? ArtifactMode.View : ArtifactMode.Extract, "/passwd"), Deadline));
        Assert.Equal(VesselErrorReason.NotFound, e.Reason);
        Assert.Contains("'/passwd'", e.Message, StringComparison.Ordinal);
        Assert.Contains("/etc", e.Message, StringComparison.Ordinal);
        await ctrd.AssertNothingLeftAsync(bundle2, output2, Deadline);
    }

    [ContainerdFact]
    public async Task Create_then_stop_from_another_process_and_a_second_cleanup_is_a_no_op()
    {
        var (bundle, output) = ctrd.NewBundle();
        string create = await SucceedsAsync(Artifacts(Deadline, ContainerdFixture.MultiImage, bundle, output, "view", "/boot/vmlinuz", "/urunc.json"));
        Assert.StartsWith("artifacts: view", create, StringComparison.Ordinal);
        Assert.Equal(ctrd.KernelV2, await File.ReadAllBytesAsync(Path.Combine(output, "boot/vmlinuz"), Deadline));

        // The same request again finds the bundle ready.
        string again = await SucceedsAsync(Artifacts(Deadline, ContainerdFixture.MultiImage, bundle, output, "view", "/boot/vmlinuz", "/urunc.json"));
        Assert.Contains("already prepared", again, StringComparison.Ordinal);

        // Shim Stop: a separate process that knows only the bundle.
        string stop = await SucceedsAsync(VesselCli.RunAsync(Deadline, "containerd", "cleanup", "--bundle", bundle));
        Assert.Contains("lease vessel-", stop, StringComparison.Ordinal);
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);

        // Task Delete after Stop: nothing left to do, and no error.
        string second = await SucceedsAsync(VesselCli.RunAsync(Deadline, "containerd", "cleanup", "--bundle", bundle));
        Assert.Contains("nothing to clean", second, StringComparison.Ordinal);
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);
    }

    [ContainerdFact]
    public async Task Cleanup_never_unmounts_the_view_while_a_bind_is_in_use()
    {
        var (bundle, output) = ctrd.NewBundle();
        await BootArtifacts.PrepareAsync(Request(ContainerdFixture.MultiImage, bundle, output, ArtifactMode.View, "/boot/vmlinuz"), Deadline);
        string kernel = Path.Combine(output, "boot/vmlinuz");
        using (FileStream inUse = File.OpenRead(kernel))
        {
            // A running VMM holds the kernel open: the bind is busy.
            var e = await Assert.ThrowsAsync<VesselException>(() => BootArtifacts.CleanupAsync(bundle, null, Deadline));
            Assert.Equal(VesselErrorReason.Conflict, e.Reason);
            Assert.True(LinuxMount.IsMountPoint(kernel));
            Assert.True(LinuxMount.IsMountPoint(Path.Combine(bundle, "vessel-view")), "the view was unmounted under a live bind");
            Assert.True(File.Exists(Path.Combine(bundle, "vessel-artifacts.json")));
            byte[] head = new byte[4096];
            Assert.Equal(head.Length, await inUse.ReadAsync(head, Deadline));
            Assert.Equal(ctrd.KernelV2.AsSpan(0, head.Length).ToArray(), head);
        }
        await BootArtifacts.CleanupAsync(bundle, null, Deadline);
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);
    }

    [RequiresTheory("root", "containerd", "ctr", "umoci", "skopeo", Timeout = ContainerdFixture.TestTimeout)]
    [InlineData("state")]
    [InlineData("lease")]
    [InlineData("view")]
    [InlineData("mount")]
    [InlineData("bind")]
    public async Task A_crash_at_any_step_is_cleaned_up_by_cleanup(string step)
    {
        var (bundle, output) = ctrd.NewBundle();
        await CrashAtAsync(step, ContainerdFixture.MultiImage, bundle, output, Deadline);

        await SucceedsAsync(VesselCli.RunAsync(Deadline, "containerd", "cleanup", "--bundle", bundle));
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);
        await SucceedsAsync(VesselCli.RunAsync(Deadline, "containerd", "cleanup", "--bundle", bundle));
    }

    [ContainerdFact]
    public async Task A_retry_after_a_crash_reuses_the_view_and_lease()
    {
        var (bundle, output) = ctrd.NewBundle();
        await CrashAtAsync("mount", ContainerdFixture.MultiImage, bundle, output, Deadline);

        string retry = await SucceedsAsync(Artifacts(Deadline, ContainerdFixture.MultiImage, bundle, output, "view", "/boot/vmlinuz", "/boot/initrd.img"));
        Assert.Equal(ctrd.Initrd, await File.ReadAllBytesAsync(Path.Combine(output, "boot/initrd.img"), Deadline));
        // One view mount, not two stacked.
        string mountinfo = await File.ReadAllTextAsync("/proc/self/mountinfo", Deadline);
        Assert.Single(mountinfo.Split('\n'), l => l.Contains($" {bundle}/vessel-view ", StringComparison.Ordinal));

        await BootArtifacts.CleanupAsync(bundle, null, Deadline);
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);
    }

    [ContainerdFact]
    public async Task An_image_without_a_snapshot_falls_back_to_extraction_and_says_so()
    {
        var (bundle, output) = ctrd.NewBundle();
        string run = await SucceedsAsync(Artifacts(Deadline, ContainerdFixture.PackedImage, bundle, output, "view", "/boot/vmlinuz"));
        Assert.StartsWith("artifacts: extract (view unavailable:", run, StringComparison.Ordinal);
        Assert.Contains("not unpacked", run, StringComparison.Ordinal);
        Assert.Equal(ctrd.KernelV1, await File.ReadAllBytesAsync(Path.Combine(output, "boot/vmlinuz"), Deadline));
        Assert.True((await VesselCli.RunAsync(Deadline, "containerd", "cleanup", "--bundle", bundle)).Succeeded);
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);

        ProcessResult strict = await Artifacts(Deadline, ContainerdFixture.PackedImage, bundle, output, "view", "/boot/vmlinuz", "--", "--no-fallback");
        Assert.Equal(1, strict.ExitCode);
        Assert.Contains("not unpacked", strict.StandardError, StringComparison.Ordinal);
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);
    }

    [ContainerdFact]
    public async Task The_mode_is_extract_unless_the_bundle_annotation_enables_the_view()
    {
        var (bundle, output) = ctrd.NewBundle();
        ArtifactResult off = await BootArtifacts.PrepareAsync(Request(ContainerdFixture.SingleImage, bundle, output, null, "/urunc.json"), Deadline);
        Assert.Equal(ArtifactMode.Extract, off.Mode);
        await BootArtifacts.CleanupAsync(bundle, null, Deadline);

        await File.WriteAllTextAsync(Path.Combine(bundle, "config.json"),
            "{\"ociVersion\":\"1.0.2\",\"annotations\":{\"" + BootArtifacts.ViewAnnotation + "\":\"true\"}}", Deadline);
        ArtifactResult on = await BootArtifacts.PrepareAsync(Request(ContainerdFixture.SingleImage, bundle, output, null, "/urunc.json"), Deadline);
        Assert.Equal(ArtifactMode.View, on.Mode);
        await BootArtifacts.CleanupAsync(bundle, null, Deadline);
        await ctrd.AssertNothingLeftAsync(bundle, output, Deadline);
    }

    [ContainerdFact]
    public async Task A_symlink_in_the_output_directory_is_refused_and_nothing_is_written_through_it()
    {
        var (bundle, output) = ctrd.NewBundle();
        string elsewhere = Path.Combine(Path.GetDirectoryName(bundle)!, "elsewhere");
        Directory.CreateDirectory(elsewhere);
        Directory.CreateDirectory(output);
        Directory.CreateSymbolicLink(Path.Combine(output, "boot"), elsewhere);

        var e = await Assert.ThrowsAsync<VesselException>(() => BootArtifacts.PrepareAsync(
            Request(ContainerdFixture.SingleImage, bundle, output, ArtifactMode.Extract, "/boot/vmlinuz"), Deadline));
        Assert.Contains("not a directory", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFileSystemEntries(elsewhere));
        Assert.False(File.Exists(Path.Combine(bundle, "vessel-artifacts.json")));
    }

    /// <summary>Awaits a CLI run, asserts it succeeded (its stderr as the message) and returns its stdout.</summary>
    private static async Task<string> SucceedsAsync(Task<ProcessResult> run)
    {
        ProcessResult r = await run;
        Assert.True(r.Succeeded, r.StandardError);
        return r.StandardOutput;
    }

    private ArtifactRequest Request(string image, string bundle, string output, ArtifactMode? mode, params string[] files) => new()
    {
        Address = ctrd.Socket,
        Namespace = ContainerdFixture.Namespace,
        Image = image,
        Files = files,
        Bundle = bundle,
        OutDirectory = output,
        Mode = mode,
    };

    /// <summary><c>vessel containerd artifacts</c> for these files (a "--" entry starts the CLI's further options, e.g. --no-fallback).</summary>
    private Task<ProcessResult> Artifacts(CancellationToken cancellationToken, string image, string bundle, string output, string mode, params string[] files)
        => VesselCli.RunAsync(cancellationToken, ArtifactsArguments(image, bundle, output, mode, files));

    /// <summary>The CLI arguments of <see cref="Artifacts"/>.</summary>
    private string[] ArtifactsArguments(string image, string bundle, string output, string mode, string[] files)
    {
        var args = new List<string>
        {
            "containerd", "artifacts", "--address", ctrd.Socket, "--namespace", ContainerdFixture.Namespace,
            "--image", image, "--bundle", bundle, "--out", output, "--mode", mode,
        };
        foreach (string f in files.TakeWhile(f => f != "--"))
        {
            args.Add("--file");
            args.Add(f);
        }
        args.AddRange(files.SkipWhile(f => f != "--").Skip(1));
        return [.. args];
    }

    /// <summary>Runs `artifacts` with the test hold at <paramref name="step"/>, waits until it gets there, and SIGKILLs it.</summary>
    private async Task CrashAtAsync(string step, string image, string bundle, string output, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        string[] arguments = [VesselCli.DllPath, .. ArtifactsArguments(image, bundle, output, "view", ["/boot/vmlinuz", "/boot/initrd.img"])];
        foreach (string a in arguments)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["VESSEL_CONTAINERD_TEST_HOLD"] = step;
        using Process process = Process.Start(psi)!;
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stderr = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                held.TrySetException(new InvalidOperationException("artifacts exited before the hold: " + stderr));
                return;
            }
            lock (stderr)
            {
                stderr.AppendLine(e.Data);
            }
            if (e.Data.Contains($"test hold after step '{step}'", StringComparison.Ordinal))
            {
                held.TrySetResult();
            }
        };
        process.OutputDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            await held.Task.WaitAsync(cancellationToken);
        }
        finally
        {
            // SIGKILL: no finally blocks, no rollback; only the state file knows what exists.
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None);
        }
        Assert.True(File.Exists(Path.Combine(bundle, "vessel-artifacts.json")));
    }
}
