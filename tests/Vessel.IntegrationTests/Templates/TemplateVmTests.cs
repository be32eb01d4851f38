using System.Collections.Concurrent;
using Vessel.IntegrationTests.Sandboxes;
using static Vessel.IntegrationTests.Sandboxes.SandboxShell;

namespace Vessel.IntegrationTests.Templates;

/// <summary>
/// Template builds with the sandbox runtime on real QEMU: steps in a build VM, finalize's start
/// command, ready check and snapshot, sandboxes resumed from the snapshot or booted on the
/// template's disk, and children that grow or shrink the disk, each booted and checked inside.
/// </summary>
[Collection(SandboxCollection.Name)]
public sealed class TemplateVmTests(SandboxEnvironment env)
{
    private static string Context(string home)
    {
        string ctx = System.IO.Path.Combine(home, "ctx");
        Directory.CreateDirectory(System.IO.Path.Combine(ctx, "app", "lib"));
        File.WriteAllText(System.IO.Path.Combine(ctx, "app", "main.sh"), "#!/bin/sh\necho hello\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(System.IO.Path.Combine(ctx, "app", "main.sh"), (UnixFileMode)0x1ED);
        }
        File.WriteAllText(System.IO.Path.Combine(ctx, "app", "lib", "data.txt"), "data\n");
        File.CreateSymbolicLink(System.IO.Path.Combine(ctx, "app", "link"), "main.sh");
        File.WriteAllText(System.IO.Path.Combine(ctx, "single.txt"), "one file\n");
        return ctx;
    }

    private static async Task<(TemplateBuildResult Result, List<BuildEvent> Events)> BuildAsync(TemplateHome home, TemplateSpec spec, CancellationToken ct)
    {
        var events = new ConcurrentQueue<BuildEvent>();
        TemplateBuildResult r = await home.Builder.BuildAsync(spec, new TemplateBuildOptions(), new SyncProgress(events.Enqueue), ct);
        return (r, [.. events]);
    }

    private static bool HookRan(List<BuildEvent> events, int phase)
        => events.Any(e => e.Phase == phase && e.Kind == BuildEventKind.Output && e.Message!.Contains(ReservedBlocks.HookName, StringComparison.Ordinal));

    private void AssertNothingLeft(TemplateHome home)
    {
        env.AssertNothingLeft();
        string sandboxes = System.IO.Path.Combine(home.Path, "sandboxes");
        Assert.True(!Directory.Exists(sandboxes) || Directory.GetFileSystemEntries(sandboxes).Length == 0, "build VM directories left in " + sandboxes);
        Assert.Empty(Directory.GetFileSystemEntries(System.IO.Path.Combine(home.Path, "work")));
        Assert.DoesNotContain(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains(home.Path, StringComparison.Ordinal));
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "nbdfuse", "fusermount3", "debugfs", "root", Timeout = 900_000)]
    public async Task Steps_run_in_a_vm_finalize_snapshots_and_sandboxes_resume_from_the_template()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        CancellationToken ct = cts.Token;
        TemplateHome home = await env.OpenTemplateHomeAsync("tpl-vm", ct);
        string ctx = Context(home.Path);
        Template template = Template.From("tarball:" + TestImages.BusyboxTarball).Named("app").DiskSize("256M").ReservedMb(16).Context(ctx)
            .Run("echo step-one-output; mkdir -p /opt/tool && echo v1 > /opt/tool/version")
            .Copy("app", "/app")
            .Copy("single.txt", "/etc/")
            .Env("PORT", "8080")
            .Workdir("/srv/www")
            .User("nobody")
            .Run("pwd > /tmp/where; id -un >> /tmp/where; echo PORT=$PORT >> /tmp/where")
            .Start("while true; do date +%s%N > /tmp/alive.new && mv /tmp/alive.new /tmp/alive; sleep 1; done") // a rename: never read truncated
            .Ready("test -s /tmp/alive");
        TemplateSpec spec = template.ToSpec();

        // First build: every phase runs in one build VM; the host sets reserved blocks in base and
        // in the first step (it boots the VM), not again in finalize.
        (TemplateBuildResult first, List<BuildEvent> events) = await BuildAsync(home, spec, ct);
        Assert.Equal(9, first.Phases.Count); // base, 7 steps, finalize
        Assert.All(first.Phases, p => Assert.False(p.Cached));
        Assert.Contains(events, e => e.Phase == 1 && e.Kind == BuildEventKind.Output && e.Message == "step-one-output");
        Assert.True(HookRan(events, 0));
        Assert.True(HookRan(events, 1));
        Assert.False(HookRan(events, 2));
        Assert.False(HookRan(events, 8));
        Assert.Single(events, e => e.Kind == BuildEventKind.Output && e.Message!.StartsWith("booting a build VM", StringComparison.Ordinal));
        TemplateRecord record = (await home.State.GetTemplateAsync("app", ct))!;
        Assert.NotNull(record.SnapshotDirectory);
        foreach (string f in new[] { SandboxSnapshot.MemoryFile, SandboxSnapshot.StateFile, SandboxSnapshot.InfoFile })
        {
            Assert.True(File.Exists(Path.Combine(record.SnapshotDirectory!, f)), f);
        }

        // A sandbox resumed from the snapshot: the start command is still running, the steps'
        // files, owners, modes, env, workdir and user are there.
        string written;
        await using (Sandbox resumed = await home.Manager.CreateFromTemplateAsync(home.Layers, record, new SandboxOptions(), restore: true, ct))
        {
            Assert.True(resumed.Timings.Restored);
            // The guest clock was set to now, not left at the snapshot's time.
            long guestNow = long.Parse(await OutputAsync(resumed, "date +%s"), System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(guestNow, DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 10, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 2);
            Assert.Equal("/srv/www\nnobody\nPORT=8080\n", await OutputAsync(resumed, "cat /tmp/where"));
            Assert.Equal("v1\n", await OutputAsync(resumed, "cat /opt/tool/version"));
            Assert.Equal("hello\n", await OutputAsync(resumed, "/app/main.sh"));
            Assert.Equal("root root 755 main.sh\n", await OutputAsync(resumed, "cd /app && stat -c '%U %G %a %n' main.sh"));
            Assert.Equal("main.sh\n", await OutputAsync(resumed, "readlink /app/link"));
            Assert.Equal("data\n", await OutputAsync(resumed, "cat /app/lib/data.txt"));
            Assert.Equal("one file\n", await OutputAsync(resumed, "cat /etc/single.txt"));
            string before = await OutputAsync(resumed, "cat /tmp/alive");
            await Task.Delay(TimeSpan.FromSeconds(2.5), ct);
            Assert.NotEqual(before, await OutputAsync(resumed, "cat /tmp/alive")); // the start command runs on after the restore
            written = await OutputAsync(resumed, "echo mine > /tmp/sandbox-write && sync && echo ok");
        }
        Assert.Equal("ok\n", written);

        // A second sandbox (cold boot on the same layer) sees the template, not the first sandbox's writes.
        await using (Sandbox cold = await home.Manager.CreateFromTemplateAsync(home.Layers, record, new SandboxOptions(), restore: false, ct))
        {
            Assert.False(cold.Timings.Restored);
            Assert.Equal("v1\n", await OutputAsync(cold, "cat /opt/tool/version"));
            Assert.Equal((1, string.Empty), await ExecAsync(cold, "test -e /tmp/sandbox-write"));
        }

        // A fully cached rebuild takes well under a second and boots nothing.
        var sw = Stopwatch.StartNew();
        (TemplateBuildResult again, events) = await BuildAsync(home, spec, ct);
        Assert.True(again.FullyCached);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(1), $"cached rebuild took {sw.Elapsed}");
        Assert.DoesNotContain(events, e => e.Kind == BuildEventKind.Output);

        // Changing the last RUN rebuilds from there: a new VM boots at that step and sets reserved blocks.
        TemplateSpec changed = template.ToSpec() with { Steps = [.. spec.Steps.Take(spec.Steps.Count - 1), new TemplateStep(StepKind.Run, ["echo changed > /tmp/where"])] };
        (TemplateBuildResult third, events) = await BuildAsync(home, changed, ct);
        Assert.Equal([true, true, true, true, true, true, true, false, false], third.Phases.Select(p => p.Cached));
        Assert.True(HookRan(events, 7));
        Assert.False(HookRan(events, 8));

        // A failing step reports its exit code and output tail; the cache and the template stay as they were.
        int entries = await home.State.CountCacheEntriesAsync(ct);
        TemplateSpec failing = changed with { Steps = [.. changed.Steps, new TemplateStep(StepKind.Run, ["echo about-to-fail >&2; exit 3"])] };
        TemplateStepFailedException failure = await Assert.ThrowsAsync<TemplateStepFailedException>(() => BuildAsync(home, failing, ct));
        Assert.Equal(3, failure.ExitCode);
        Assert.Contains("about-to-fail", failure.OutputTail, StringComparison.Ordinal);
        Assert.Equal(entries, await home.State.CountCacheEntriesAsync(ct));
        Assert.Equal(third.FinalHash, (await home.State.GetTemplateAsync("app", ct))!.FinalHash);
        AssertNothingLeft(home);
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "nbdfuse", "fusermount3", "debugfs", "resize2fs", "dumpe2fs", "root", Timeout = 900_000)]
    public async Task Children_that_grow_and_shrink_the_disk_boot_with_the_new_size_and_the_parents_files()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        CancellationToken ct = cts.Token;
        TemplateHome home = await env.OpenTemplateHomeAsync("tpl-resize", ct);
        // The parent's disk is what its snapshot left: a filesystem mounted in a running VM.
        TemplateSpec parent = Template.From("tarball:" + TestImages.BusyboxTarball).Named("parent").DiskSize("256M")
            .Run("mkdir -p /data && head -c 3000000 /dev/urandom > /data/blob && md5sum /data/blob > /data/blob.md5")
            .Start("sleep 100000").ToSpec();
        await BuildAsync(home, parent, ct);

        foreach ((string size, int reservedMb) in new[] { ("512M", 32), ("128M", 8) })
        {
            long bytes = ByteSize.Parse(size);
            TemplateSpec child = Template.FromTemplate("parent").Named("child-" + size.ToLowerInvariant()).DiskSize(size).ReservedMb(reservedMb)
                .Run("echo child > /data/child.txt").ToSpec();
            (TemplateBuildResult built, _) = await BuildAsync(home, child, ct);
            Assert.Equal(bytes, built.DiskSizeBytes);
            TemplateRecord record = (await home.State.GetTemplateAsync(child.Name, ct))!;
            foreach (bool restore in new[] { true, false })
            {
                await using Sandbox sandbox = await home.Manager.CreateFromTemplateAsync(home.Layers, record, new SandboxOptions(), restore, ct);
                // df: 1 KiB blocks; the filesystem spans the new disk less ext4's own metadata.
                string[] df = (await OutputAsync(sandbox, "df -k / | tail -1")).Split(' ', StringSplitOptions.RemoveEmptyEntries);
                long total = long.Parse(df[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
                Assert.InRange(total, bytes * 85 / 100, bytes);
                Assert.Equal("/data/blob: OK\n", await OutputAsync(sandbox, "md5sum -c /data/blob.md5"));
                Assert.Equal("child\n", await OutputAsync(sandbox, "cat /data/child.txt"));
            }
            // Reserved blocks as asked, read with the host's tools from the stored layer.
            string flat = Path.Combine(home.Path, "flat.img");
            await home.Layers.FlattenAsync(record.LayerBuildId, flat, null, ct);
            string super = (await ExternalProcess.RunAsync("dumpe2fs", ["-h", flat], ct)).EnsureSuccess().StandardOutput;
            Assert.Contains($"Reserved block count:     {reservedMb * 256}\n", super, StringComparison.Ordinal);
            Assert.Contains($"Block count:              {bytes / 4096}\n", super, StringComparison.Ordinal);
            File.Delete(flat);
        }

        AssertNothingLeft(home);
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "nbdfuse", "fusermount3", "root", Timeout = 600_000)]
    public async Task Cli_template_build_runs_steps_in_a_vm_and_template_run_resumes_its_snapshot()
    {
        string home = Path.Combine(env.StateDirectory, "tpl-cli");
        Directory.CreateDirectory(home);
        string spec = TestImages.WriteTemplateSpec(Path.Combine(home, "spec.json"), "cli",
            """ "steps": [ { "run": "echo from-the-build-vm; echo baked > /baked.txt" }, { "env": { "WHO": "template" } } ], "start": "sleep 100000", "ready": "pidof sleep" """,
            TestImages.BusyboxOciReference);
        ProcessResult build = await VesselCli.RunAsync(CancellationToken.None, "template", "build", "-f", spec, "--home", home);
        Assert.True(build.ExitCode == 0, build.StandardError);
        Assert.Contains("from-the-build-vm", build.StandardError, StringComparison.Ordinal);
        Assert.Contains("snapshot:", build.StandardError, StringComparison.Ordinal);

        ProcessResult run = await VesselCli.RunAsync(CancellationToken.None, "template", "run", "cli", "--home", home, "--timings", "--",
            "sh", "-c", "cat /baked.txt; echo $WHO; pidof sleep >/dev/null && echo start-running; exit 7");
        Assert.Equal(7, run.ExitCode);
        Assert.Equal("baked\ntemplate\nstart-running\n", run.StandardOutput);
        Assert.Contains("restored from snapshot", run.StandardError, StringComparison.Ordinal);

        ProcessResult cold = await VesselCli.RunAsync(CancellationToken.None, "template", "run", "cli", "--cold", "--home", home, "--", "cat", "/baked.txt");
        Assert.Equal((0, "baked\n"), (cold.ExitCode, cold.StandardOutput));
        ProcessResult missing = await VesselCli.RunAsync(CancellationToken.None, "template", "run", "nope", "--home", home, "--", "true");
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("no template named 'nope'", missing.StandardError, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(home, "sandboxes")));
        env.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "nbdfuse", "fusermount3", "root", Timeout = 600_000)]
    public async Task Cancelling_a_build_mid_step_stops_the_vm_and_leaves_the_cache_and_nothing_else()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(8));
        TemplateHome home = await env.OpenTemplateHomeAsync("tpl-cancel", cts.Token);
        TemplateSpec spec = Template.From("tarball:" + TestImages.BusyboxTarball).Named("slow").DiskSize("128M")
            .Run("echo started-sleeping; sleep 600").ToSpec();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
        var progress = new SyncProgress(e =>
        {
            if (e.Kind == BuildEventKind.Output && e.Message == "started-sleeping")
            {
                cancel.Cancel();
            }
        });
        var sw = Stopwatch.StartNew();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => home.Builder.BuildAsync(spec, new TemplateBuildOptions(), progress, cancel.Token));
        Assert.True(sw.Elapsed < TimeSpan.FromMinutes(2), $"the cancelled build took {sw.Elapsed}");
        Assert.Equal(1, await home.State.CountCacheEntriesAsync(cts.Token)); // base only: the step never finished
        Assert.Equal("cancelled", (await home.State.ListBuildsAsync("slow", cts.Token)).Single().Status);
        AssertNothingLeft(home);
    }
}
