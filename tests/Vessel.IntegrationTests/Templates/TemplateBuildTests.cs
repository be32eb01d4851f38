using System.Collections.Concurrent;

namespace Vessel.IntegrationTests.Templates;

/// <summary>
/// The build pipeline on real tools: the tests' busybox image (which has no e2fsprogs),
/// the layer store, SQLite state, nbdfuse and debugfs for the steps that need no VM.
/// </summary>
public sealed class TemplateBuildTests : IDisposable
{
    private const string Requirements = "nbdfuse";
    private readonly TempDirectory _home = TempDirectory.Create("vessel-tpl-test-");

    public void Dispose() => _home.Dispose();

    private async Task<(TemplateBuilder Builder, StateStore State, LayerStore Layers)> OpenAsync(CancellationToken ct)
    {
        StateStore state = await StateStore.OpenAsync(_home.Combine("state.db"), ct);
        LayerStore layers = LayerStore.OpenDirectory(_home.Combine("blocks"));
        return (new TemplateBuilder(state, layers, new HostStepRunner(), _home.Path), state, layers);
    }

    private string Context()
    {
        string ctx = _home.Combine("ctx");
        Directory.CreateDirectory(Path.Combine(ctx, "app", "lib"));
        File.WriteAllText(Path.Combine(ctx, "app", "main.sh"), "#!/bin/sh\necho hello\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(Path.Combine(ctx, "app", "main.sh"), (UnixFileMode)0x1ED);
        }
        File.WriteAllText(Path.Combine(ctx, "app", "lib", "data.txt"), "data\n");
        File.CreateSymbolicLink(Path.Combine(ctx, "app", "link"), "main.sh");
        return ctx;
    }

    private static Template Base(string ctx) => Template.From("tarball:" + TestImages.BusyboxTarball).Named("web").DiskSize("256M").ReservedMb(16).Context(ctx)
        .Copy("app", "/app").Env("PORT", "8080").Workdir("/srv/www").User("nobody");

    private static async Task<(TemplateBuildResult Result, List<BuildEvent> Events)> BuildAsync(TemplateBuilder b, TemplateSpec spec, CancellationToken ct, bool noCache = false)
    {
        var events = new ConcurrentQueue<BuildEvent>();
        TemplateBuildResult r = await b.BuildAsync(spec, new TemplateBuildOptions { NoCache = noCache }, new SyncProgress(events.Enqueue), ct);
        return (r, [.. events]);
    }

    private static bool HookRan(List<BuildEvent> events, int phase)
        => events.Any(e => e.Phase == phase && e.Kind == BuildEventKind.Output && e.Message!.Contains(ReservedBlocks.HookName, StringComparison.Ordinal));

    private async Task<string> FlattenAsync(LayerStore layers, Guid layer, CancellationToken ct)
    {
        string flat = _home.Combine($"flat-{layer:N}.img");
        await layers.FlattenAsync(layer, flat, null, ct);
        Assert.Null(await E2fs.CheckAsync(flat));
        return flat;
    }

    private static async Task<long> ReservedBlocksAsync(string image)
    {
        string super = (await ExternalProcess.RunAsync("dumpe2fs", ["-h", image], CancellationToken.None)).StandardOutput;
        string line = super.Split('\n').First(l => l.StartsWith("Reserved block count:", StringComparison.Ordinal));
        return long.Parse(line.Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    [RequiresFact(Requirements, "fusermount3", "debugfs", "busybox-image", "root")]
    public async Task Builds_caches_rebuilds_from_a_changed_step_and_sets_reserved_blocks_on_the_host()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        CancellationToken ct = cts.Token;
        (TemplateBuilder builder, StateStore state, LayerStore layers) = await OpenAsync(ct);
        string ctx = Context();
        TemplateSpec spec = Base(ctx).ToSpec();

        // First build: every phase runs; the hook runs in base and in the first (uncached) step only.
        (TemplateBuildResult first, List<BuildEvent> events) = await BuildAsync(builder, spec, ct);
        Assert.Equal(6, first.Phases.Count);
        Assert.All(first.Phases, p => Assert.False(p.Cached));
        Assert.True(HookRan(events, 0), "base sets reserved blocks");
        Assert.True(HookRan(events, 1), "the first uncached step (it boots the build VM) sets them");
        Assert.False(HookRan(events, 2));
        Assert.False(HookRan(events, 5), "finalize's source was not cached: a step already set them");

        string flat = await FlattenAsync(layers, first.LayerBuildId, ct);
        Assert.Equal(16L * 1024 * 1024 / 4096, await ReservedBlocksAsync(flat));
        Assert.Equal("#!/bin/sh\necho hello\n", Encoding.ASCII.GetString(await E2fs.ReadFileAsync(flat, "/app/main.sh")));
        Assert.Equal("data\n", Encoding.ASCII.GetString(await E2fs.ReadFileAsync(flat, "/app/lib/data.txt")));
        Assert.Contains("Fast link dest: \"main.sh\"", await E2fs.DebugfsAsync(flat, "stat /app/link"), StringComparison.Ordinal);
        Assert.Contains("Mode:  0755", await E2fs.DebugfsAsync(flat, "stat /app/main.sh"), StringComparison.Ordinal);
        Assert.Contains("Type: directory", await E2fs.DebugfsAsync(flat, "stat /srv/www"), StringComparison.Ordinal);
        Assert.DoesNotContain("Type:", await E2fs.DebugfsAsync(flat, "stat /sbin/tune2fs"), StringComparison.Ordinal); // the guest has no e2fsprogs
        TemplateConfig config = TemplateConfig.FromJson((await state.GetTemplateAsync("web", ct))!.ConfigJson, "web");
        Assert.Contains("PORT=8080", config.Env);
        Assert.Equal(("/srv/www", "nobody"), (config.Workdir, config.User));

        // Fully cached rebuild: well under a second, nothing new stored.
        int builds = (await layers.ListAsync(ct)).Count;
        var sw = Stopwatch.StartNew();
        (TemplateBuildResult again, _) = await BuildAsync(builder, spec, ct);
        Assert.True(again.FullyCached);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(1), $"cached rebuild took {sw.Elapsed}");
        Assert.Equal(first.FinalHash, again.FinalHash);
        Assert.Equal(builds, (await layers.ListAsync(ct)).Count);

        // Change the third step: base and the first two steps stay cached; from there it rebuilds,
        // and the first uncached step (a new VM) sets the reserved blocks again.
        TemplateSpec changed = spec with { Steps = [spec.Steps[0], spec.Steps[1], new TemplateStep(StepKind.Workdir, ["/srv/other"]), spec.Steps[3]] };
        (TemplateBuildResult third, events) = await BuildAsync(builder, changed, ct);
        Assert.Equal([true, true, true, false, false, false], third.Phases.Select(p => p.Cached));
        Assert.True(HookRan(events, 3));
        Assert.False(HookRan(events, 0));

        // Only finalize changes (cpu): its source layer is cached, so finalize sets them.
        (TemplateBuildResult fourth, events) = await BuildAsync(builder, changed with { Cpu = 2 }, ct);
        Assert.Equal([true, true, true, true, true, false], fourth.Phases.Select(p => p.Cached));
        Assert.True(HookRan(events, 5), "finalize on a cached source layer sets reserved blocks");
        Assert.Equal(16L * 1024 * 1024 / 4096, await ReservedBlocksAsync(await FlattenAsync(layers, fourth.LayerBuildId, ct)));

        // --no-cache runs everything again.
        (TemplateBuildResult fifth, _) = await BuildAsync(builder, spec, ct, noCache: true);
        Assert.All(fifth.Phases, p => Assert.False(p.Cached));
        TemplateResizeTests.AssertNothingLeft(_home.Combine("work"));
    }

    [RequiresFact(Requirements, "fusermount3", "debugfs", "busybox-image", "root")]
    public async Task Concurrent_builds_of_one_template_do_the_work_once()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        CancellationToken ct = cts.Token;
        (TemplateBuilder builder, StateStore state, LayerStore layers) = await OpenAsync(ct);
        TemplateSpec spec = Base(Context()).ToSpec();
        (TemplateBuildResult, List<BuildEvent>)[] both = await Task.WhenAll(BuildAsync(builder, spec, ct), BuildAsync(builder, spec, ct));
        Assert.Equal(both[0].Item1.FinalHash, both[1].Item1.FinalHash);
        // Each phase ran in exactly one of the two builds.
        for (int i = 0; i < 6; i++)
        {
            Assert.Equal(1, both.Count(b => !b.Item1.Phases[i].Cached));
        }
        Assert.Equal(6, await state.CountCacheEntriesAsync(ct));
        // base + COPY + WORKDIR wrote layers; ENV, USER and finalize reuse the previous layer.
        Assert.Equal(3, (await layers.ListAsync(ct)).Count);
    }

    [RequiresFact(Requirements, "fusermount3", "debugfs", "busybox-image", "root")]
    public async Task A_failing_step_leaves_the_cache_as_it_was_and_records_the_failure()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken ct = cts.Token;
        (TemplateBuilder builder, StateStore state, LayerStore layers) = await OpenAsync(ct);
        TemplateSpec spec = Base(Context()).Run("echo needs a vm").ToSpec();
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => BuildAsync(builder, spec, ct));
        Assert.Contains("RUN", e.Message, StringComparison.Ordinal);
        Assert.Equal(5, await state.CountCacheEntriesAsync(ct)); // base + 4 steps; not the failed one
        Assert.Null(await state.GetTemplateAsync("web", ct));
        Assert.Equal("failed", (await state.ListBuildsAsync("web", ct)).Single().Status);
        TemplateResizeTests.AssertNothingLeft(_home.Combine("work"));
    }

    [RequiresFact(Requirements, "fusermount3", "debugfs", "resize2fs", "busybox-image", "root")]
    public async Task Children_grow_and_shrink_the_parent_keep_its_files_and_are_cached_by_size()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        CancellationToken ct = cts.Token;
        (TemplateBuilder builder, StateStore state, LayerStore layers) = await OpenAsync(ct);
        await BuildAsync(builder, Base(Context()).ToSpec(), ct);
        foreach ((string size, int reserved) in new[] { ("512M", 32), ("128M", 0) })
        {
            TemplateSpec child = Template.FromTemplate("web").Named("child-" + size.ToLowerInvariant()).DiskSize(size).ReservedMb(reserved).Env("CHILD", "1").ToSpec();
            (TemplateBuildResult r, _) = await BuildAsync(builder, child, ct);
            Assert.Equal(ByteSize.Parse(size), r.DiskSizeBytes);
            string flat = await FlattenAsync(layers, r.LayerBuildId, ct);
            Assert.Contains($"Block count:              {ByteSize.Parse(size) / 4096}\n", (await ExternalProcess.RunAsync("dumpe2fs", ["-h", flat], ct)).StandardOutput, StringComparison.Ordinal);
            Assert.Equal("#!/bin/sh\necho hello\n", Encoding.ASCII.GetString(await E2fs.ReadFileAsync(flat, "/app/main.sh")));
            Assert.Equal(reserved * 256L, await ReservedBlocksAsync(flat));
            BuildHeader layer = await layers.ReadHeaderAsync(r.LayerBuildId, ct);
            Assert.True(layer.Generation > 0, "the child's base is a layer over the parent's, not a copy");
            (TemplateBuildResult cached, _) = await BuildAsync(builder, child, ct);
            Assert.True(cached.FullyCached);
        }
        TemplateResizeTests.AssertNothingLeft(_home.Combine("work"));
    }

    [RequiresFact(Requirements, "fusermount3", "debugfs", "busybox-image", "root")]
    public async Task A_moved_reference_rebuilds_because_the_cache_keys_on_the_content_digest()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken ct = cts.Token;
        (TemplateBuilder builder, _, _) = await OpenAsync(ct);
        string image = _home.Combine("image.tar.gz");
        File.Copy(TestImages.BusyboxTarball, image);
        TemplateSpec spec = Template.From("tarball:" + image).Named("moving").DiskSize("128M").ToSpec();
        (TemplateBuildResult first, _) = await BuildAsync(builder, spec, ct);
        (TemplateBuildResult same, _) = await BuildAsync(builder, spec, ct);
        Assert.True(same.FullyCached);
        // Same reference, new content (what a moved tag is): the base must rebuild.
        byte[] extra = Vessel.Testing.LayersImageSource.Tar(w => Vessel.Testing.LayersImageSource.File(w, "etc/moved", "yes\n"));
        await File.WriteAllBytesAsync(image, LayersImageSource.Gzip(extra), ct);
        (TemplateBuildResult moved, _) = await BuildAsync(builder, spec, ct);
        Assert.False(moved.Phases[0].Cached);
        Assert.NotEqual(first.FinalHash, moved.FinalHash);
    }

    [RequiresFact(Requirements, "fusermount3", "debugfs", "umoci", "skopeo", "docker-registry", "root")]
    public async Task A_tag_moved_in_a_registry_rebuilds_and_the_same_digest_stays_cached()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        CancellationToken ct = cts.Token;
        (TemplateBuilder builder, _, LayerStore layers) = await OpenAsync(ct);
        // Two versions of one image, made with umoci; the registry's tag moves from v1 to v2.
        string layout = _home.Combine("oci");
        string bundle = _home.Combine("bundle");
        await ToolAsync(ct, "umoci", "init", "--layout", layout);
        await ToolAsync(ct, "umoci", "new", "--image", layout + ":v1");
        await ToolAsync(ct, "umoci", "unpack", "--rootless", "--image", layout + ":v1", bundle);
        Directory.CreateDirectory(Path.Combine(bundle, "rootfs", "etc"));
        await File.WriteAllTextAsync(Path.Combine(bundle, "rootfs", "etc", "version"), "1\n", ct);
        await ToolAsync(ct, "umoci", "repack", "--image", layout + ":v1", bundle);
        await File.WriteAllTextAsync(Path.Combine(bundle, "rootfs", "etc", "version"), "2\n", ct);
        await ToolAsync(ct, "umoci", "repack", "--image", layout + ":v2", bundle);

        await using Vessel.IntegrationTests.Oci.LocalRegistry registry = await Vessel.IntegrationTests.Oci.LocalRegistry.StartAsync(ct);
        string reference = $"docker://{registry.Host}/test/app:latest";
        var options = new TemplateBuildOptions { ImageOptions = new Vessel.Oci.ImageSourceOptions { Insecure = true } };
        TemplateSpec spec = Template.From(reference).Named("tagged").DiskSize("64M").ToSpec();
        async Task<TemplateBuildResult> Build() => await builder.BuildAsync(spec, options, null, ct);
        async Task<string> Version(TemplateBuildResult r) => Encoding.ASCII.GetString(await E2fs.ReadFileAsync(await FlattenAsync(layers, r.LayerBuildId, ct), "/etc/version"));

        await ToolAsync(ct, "skopeo", "copy", "--dest-tls-verify=false", $"oci:{layout}:v1", reference);
        TemplateBuildResult first = await Build();
        Assert.Equal("1\n", await Version(first));
        // The same content pushed again under the tag: still cached.
        await ToolAsync(ct, "skopeo", "copy", "--dest-tls-verify=false", $"oci:{layout}:v1", reference);
        Assert.True((await Build()).FullyCached);
        // The tag moves: same reference, new digest, so base rebuilds with the new content.
        await ToolAsync(ct, "skopeo", "copy", "--dest-tls-verify=false", $"oci:{layout}:v2", reference);
        TemplateBuildResult moved = await Build();
        Assert.False(moved.Phases[0].Cached);
        Assert.NotEqual(first.FinalHash, moved.FinalHash);
        Assert.Equal("2\n", await Version(moved));
        Assert.True((await Build()).FullyCached);
    }

    private static async Task ToolAsync(CancellationToken ct, string tool, params string[] args)
        => (await ExternalProcess.RunAsync(tool, args, ct, timeout: TimeSpan.FromMinutes(2))).EnsureSuccess();

}
