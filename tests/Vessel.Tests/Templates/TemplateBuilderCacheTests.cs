using Vessel.Tests.Oci;

namespace Vessel.Tests.Templates;

/// <summary>
/// <see cref="TemplateBuilder"/>'s phase cache with a fake <see cref="IStepRunner"/> (no VM): the
/// real state store, layer store, phase locks and rootfs writer, and a runner that records what it
/// ran and writes one block per step, so each phase's hit, miss and recheck is observable.
/// </summary>
public sealed class TemplateBuilderCacheTests : IAsyncLifetime
{
    private const int Timeout = 120_000;
    private readonly TempDirectory _home = TempDirectory.Create("vessel-tplcache-test-");
    private readonly FakeStepRunner _runner = new();
    private readonly CancellationToken _ct = CancellationToken.None;
    private StateStore? _state;
    private TemplateBuilder? _builder;
    private string _image = string.Empty;

    public async Task InitializeAsync()
    {
        _state = await StateStore.OpenAsync(_home.Combine("state.db"), _ct);
        _builder = new TemplateBuilder(_state, LayerStore.OpenDirectory(_home.Combine("blocks")), _runner, _home.Path);
        TestImage image = new TestImage().AddLayer(TestImage.Tar(("etc/hostname", "cache-test\n"), ("srv/data", "data")));
        byte[] manifest = image.AddManifest();
        _image = _home.Combine("image");
        image.WriteLayout(_image, TestImage.IndexJson(TestImage.Tagged(manifest, "v1")));
    }

    public Task DisposeAsync()
    {
        _home.Dispose();
        return Task.CompletedTask;
    }

    private TemplateSpec Spec(params string[] commands)
    {
        Template t = Template.From(_image).Named("cached").DiskSize("64M");
        foreach (string command in commands)
        {
            t = t.Run(command);
        }
        return t.ToSpec();
    }

    private async Task<(TemplateBuildResult Result, List<BuildEvent> Events)> BuildAsync(TemplateSpec spec, bool noCache = false)
    {
        var events = new List<BuildEvent>(); // reported in order on the build's own flow
        TemplateBuildResult result = await _builder!.BuildAsync(spec, new TemplateBuildOptions { NoCache = noCache }, new SyncProgress(events.Add), _ct);
        return (result, events);
    }

    private static bool[] Cached(TemplateBuildResult result) => [.. result.Phases.Select(p => p.Cached)];

    [RequiresFact("busybox", Timeout = Timeout)]
    public async Task First_build_misses_every_phase_and_an_identical_build_hits_every_phase()
    {
        TemplateSpec spec = Spec("echo a", "echo b");
        (TemplateBuildResult first, List<BuildEvent> events) = await BuildAsync(spec);
        Assert.Equal([false, false, false, false], Cached(first));
        Assert.Equal(["run: echo a", "run: echo b", "finalize"], _runner.Ran);
        Assert.Equal(1, _runner.Sessions); // the uncached steps and finalize share one build VM
        Assert.Equal(0, _runner.Open);
        Assert.Equal(4, await _state!.CountCacheEntriesAsync(_ct));
        Assert.Equal(4, events.Count(e => e.Kind == BuildEventKind.Started));
        Assert.DoesNotContain(events, e => e.Kind == BuildEventKind.Cached);

        (TemplateBuildResult second, events) = await BuildAsync(spec);
        Assert.True(second.FullyCached);
        Assert.Equal(first.FinalHash, second.FinalHash);
        Assert.Equal(first.LayerBuildId, second.LayerBuildId);
        Assert.Equal(first.Phases.Select(p => p.Hash), second.Phases.Select(p => p.Hash));
        Assert.Equal(3, _runner.Ran.Count); // nothing ran again
        Assert.Equal(1, _runner.Sessions);
        Assert.Equal(4, events.Count(e => e.Kind == BuildEventKind.Cached));
        Assert.DoesNotContain(events, e => e.Kind == BuildEventKind.Started);
        Assert.Equal(["succeeded", "succeeded"], (await _state.ListBuildsAsync("cached", _ct)).Select(b => b.Status).Order());
    }

    [RequiresFact("busybox", Timeout = Timeout)]
    public async Task A_changed_step_runs_from_that_step_on_and_reuses_the_phases_before_it()
    {
        (TemplateBuildResult first, _) = await BuildAsync(Spec("echo a", "echo b"));
        (TemplateBuildResult second, _) = await BuildAsync(Spec("echo a", "echo c"));
        Assert.Equal([true, true, false, false], Cached(second));
        Assert.Equal(first.Phases[1].Hash, second.Phases[1].Hash);
        Assert.Equal(first.Phases[1].LayerBuildId, second.Phases[1].LayerBuildId);
        Assert.NotEqual(first.Phases[2].Hash, second.Phases[2].Hash);
        Assert.NotEqual(first.FinalHash, second.FinalHash);
        Assert.Equal(["run: echo a", "run: echo b", "finalize", "run: echo c", "finalize"], _runner.Ran);
        Assert.Equal(2, _runner.Sessions); // the changed step boots afresh on the cached layer of step 1
        Assert.Equal(0, _runner.Open);
    }

    [RequiresFact("busybox", Timeout = Timeout)]
    public async Task A_new_snapshot_identity_reruns_only_finalize()
    {
        (TemplateBuildResult first, _) = await BuildAsync(Spec("echo a"));
        _runner.SnapshotIdentity = "kit-2";
        (TemplateBuildResult second, _) = await BuildAsync(Spec("echo a"));
        Assert.Equal([true, true, false], Cached(second));
        Assert.NotEqual(first.FinalHash, second.FinalHash);
        Assert.Equal(["run: echo a", "finalize", "finalize"], _runner.Ran);
        Assert.Equal(2, _runner.Sessions);
    }

    [RequiresFact("busybox", Timeout = Timeout)]
    public async Task No_cache_reruns_every_phase_and_replaces_the_entries_under_the_same_hashes()
    {
        (TemplateBuildResult first, _) = await BuildAsync(Spec("echo a"));
        (TemplateBuildResult second, List<BuildEvent> events) = await BuildAsync(Spec("echo a"), noCache: true);
        Assert.Equal([false, false, false], Cached(second));
        Assert.DoesNotContain(events, e => e.Kind == BuildEventKind.Cached);
        Assert.Equal(first.Phases.Select(p => p.Hash), second.Phases.Select(p => p.Hash));
        Assert.NotEqual(first.LayerBuildId, second.LayerBuildId);
        Assert.Equal(["run: echo a", "finalize", "run: echo a", "finalize"], _runner.Ran);
        Assert.Equal(3, await _state!.CountCacheEntriesAsync(_ct));
        Assert.Equal(second.Phases[1].LayerBuildId, (await _state.GetCacheEntryAsync(second.Phases[1].Hash, _ct))!.LayerBuildId);
        Assert.Equal(second.LayerBuildId, (await _state.GetTemplateAsync("cached", _ct))!.LayerBuildId);
    }

    [RequiresFact("busybox", Timeout = Timeout)]
    public async Task A_failed_step_publishes_nothing_for_it_and_the_next_build_resumes_after_the_last_good_phase()
    {
        _runner.Failing = "echo b";
        var e = await Assert.ThrowsAsync<TemplateStepFailedException>(() => BuildAsync(Spec("echo a", "echo b")));
        Assert.Equal(1, e.ExitCode);
        Assert.Equal(2, await _state!.CountCacheEntriesAsync(_ct)); // base and step 1
        Assert.Null(await _state.GetTemplateAsync("cached", _ct));
        BuildRecord failed = Assert.Single(await _state.ListBuildsAsync("cached", _ct));
        Assert.Equal("failed", failed.Status);
        Assert.Contains("exited with 1", failed.Error!, StringComparison.Ordinal);
        Assert.Equal(0, _runner.Open);

        _runner.Failing = null;
        (TemplateBuildResult retry, _) = await BuildAsync(Spec("echo a", "echo b"));
        Assert.Equal([true, true, false, false], Cached(retry));
        Assert.Equal(["run: echo a", "run: echo b", "run: echo b", "finalize"], _runner.Ran);
    }

    [RequiresFact("busybox", Timeout = Timeout)]
    public async Task A_phase_cached_by_another_build_while_this_one_waited_for_its_lock_is_not_run_again()
    {
        (TemplateBuildResult first, _) = await BuildAsync(Spec("echo a"));
        string stepHash = first.Phases[1].Hash;
        CacheEntry step = (await _state!.GetCacheEntryAsync(stepHash, _ct))!;
        await _state.DeleteCacheEntriesAsync([stepHash, first.FinalHash], _ct);

        // Another build holds step 1's lock; it publishes the step while this build waits.
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task<TemplateBuildResult> build;
        await using (PhaseLock held = await PhaseLock.AcquireAsync(new VesselHome(_home.Path).Locks, stepHash, null, _ct))
        {
            build = _builder!.BuildAsync(Spec("echo a"), new TemplateBuildOptions(), new SyncProgress(ev =>
            {
                if (ev.Phase == 1 && ev.Kind == BuildEventKind.Waiting)
                {
                    waiting.TrySetResult();
                }
            }), _ct);
            await waiting.Task.WaitAsync(TimeSpan.FromSeconds(60));
            await _state.PutCacheEntryAsync(step, _ct);
        }
        TemplateBuildResult second = await build;
        Assert.Equal([true, true, false], Cached(second));
        Assert.Equal(step.LayerBuildId, second.Phases[1].LayerBuildId);
        Assert.Equal(["run: echo a", "finalize", "finalize"], _runner.Ran); // step 1 ran once
    }

    private sealed class SyncProgress(Action<BuildEvent> report) : IProgress<BuildEvent>
    {
        public void Report(BuildEvent value) => report(value);
    }

    /// <summary>Runs nothing: records each step, writes one block per step near the disk's end (so the step has a layer of its own).</summary>
    private sealed class FakeStepRunner : IStepRunner
    {
        public string Description => "fake runner";

        public string SnapshotIdentity { get; set; } = "kit-1";

        public List<string> Ran { get; } = [];

        /// <summary>The run command that fails (exit 1), if any.</summary>
        public string? Failing { get; set; }

        public int Sessions { get; private set; }

        public int Open { get; private set; }

        public Task<IStepSession> StartAsync(StepSessionRequest request, CancellationToken cancellationToken)
        {
            Sessions++;
            Open++;
            return Task.FromResult<IStepSession>(new Session(this, request.Disk));
        }

        private sealed class Session(FakeStepRunner runner, IBlockDevice disk) : IStepSession
        {
            public async Task RunAsync(TemplateStep step, TemplateConfig config, CopySource? copy, Action<string> output, CancellationToken cancellationToken)
            {
                string command = step.Arguments[0];
                runner.Ran.Add("run: " + command);
                if (command == runner.Failing)
                {
                    throw new TemplateStepFailedException(step.ToString(), 1, "failing on purpose");
                }
                byte[] block = new byte[disk.BlockSize];
                System.Text.Encoding.UTF8.GetBytes($"{runner.Ran.Count}: {command}").CopyTo(block, 0);
                await disk.WriteAsync(disk.Size - (runner.Ran.Count * (long)disk.BlockSize), block, cancellationToken);
            }

            public Task<string?> FinalizeAsync(TemplateConfig config, string snapshotDirectory, Action<string> output, CancellationToken cancellationToken)
            {
                runner.Ran.Add("finalize");
                return Task.FromResult<string?>(null);
            }

            public ValueTask DisposeAsync()
            {
                runner.Open--;
                return ValueTask.CompletedTask;
            }
        }
    }
}
