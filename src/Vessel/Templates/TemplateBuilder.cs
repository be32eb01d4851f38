using System.Diagnostics;
using System.Text;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.Oci;
using Vessel.Rootfs;
using Vessel.State;

namespace Vessel.Templates;

public sealed record TemplateBuildOptions
{
    /// <summary>Rebuild every phase even when its hash is cached (the new results replace the cache entries).</summary>
    public bool NoCache { get; init; }

    public BuildEnvironment Environment { get; init; } = BuildEnvironment.Default;

    public ImageSourceOptions ImageOptions { get; init; } = ImageSourceOptions.Default;

    public string Hostname { get; init; } = "vessel";

    public string? BusyboxPath { get; init; }
}

public enum BuildEventKind
{
    Started,
    Cached,
    Waiting,
    Output,
    Done,
    Failed,
}

/// <summary>Progress of a build, per phase: index 0 is base, 1..n the steps, n+1 finalize.</summary>
public sealed record BuildEvent(int Phase, int Phases, string Title, BuildEventKind Kind, string? Message = null, string? Hash = null, TimeSpan Elapsed = default)
{
    /// <summary>
    /// The event as one line of a build log: the phase's head, or step output indented under it
    /// (stamped with <paramref name="outputAt"/>, the time since the build started, where given).
    /// </summary>
    public string Describe(TimeSpan? outputAt = null)
    {
        string head = $"[{Phase + 1}/{Phases}] {Title}";
        return Kind switch
        {
            BuildEventKind.Cached => $"{head}  CACHED",
            BuildEventKind.Waiting => $"{head}  waiting: {Message}",
            BuildEventKind.Output => outputAt is { } at ? $"      | {at.TotalSeconds,6:0.00}s {Message}" : $"      | {Message}",
            BuildEventKind.Done => $"      done in {Elapsed.TotalSeconds:0.00} s",
            BuildEventKind.Failed => $"{head}  FAILED: {Message}",
            _ => head,
        };
    }
}

public sealed record PhaseResult(string Title, string Hash, bool Cached, Guid LayerBuildId, TimeSpan Elapsed);

public sealed record TemplateBuildResult(string Name, string FinalHash, Guid LayerBuildId, long DiskSizeBytes, IReadOnlyList<PhaseResult> Phases, TimeSpan Elapsed)
{
    public bool FullyCached => Phases.All(p => p.Cached);
}

/// <summary>
/// Builds templates in phases (docs/ARCHITECTURE.md, "Templates"): base, one phase per
/// step, finalize. Each phase's hash chains its inputs from the previous one; a phase whose
/// hash has a cache entry is skipped. A missed phase runs under a lock on its hash (so
/// concurrent builds do the work once), stores its layer, and only then publishes its cache
/// entry. A failure leaves the cache as it was before that phase.
/// </summary>
internal sealed class TemplateBuilder(StateStore state, LayerStore layers, IStepRunner runner, string homeDirectory)
{
    private readonly StateStore _state = state;
    private readonly LayerStore _layers = layers;
    private readonly IStepRunner _runner = runner;
    private readonly VesselHome _home = new(homeDirectory);

    public async Task<TemplateBuildResult> BuildAsync(TemplateSpec spec, TemplateBuildOptions options, IProgress<BuildEvent>? progress, CancellationToken cancellationToken)
    {
        TemplateSpecValidator.ThrowIfInvalid(spec);
        var clock = Stopwatch.StartNew();
        // Layers and snapshots exist before the rows that name them: 'vessel gc' waits for this build.
        using GcLock gcHeld = await GcLock.SharedAsync(_home, () => progress?.Report(
            new BuildEvent(0, spec.Steps.Count + 2, "base", BuildEventKind.Waiting, "vessel gc is running in this home")), cancellationToken);
        // What killed builds left: their rows say 'failed', their overlay caches go.
        await _state.FailBuildsOfDeadOwnersAsync(DateTimeOffset.UtcNow, cancellationToken);
        OverlayDevice.ReclaimLeftoverCaches(_home.Work);
        await WorkLeftovers.ReclaimAsync(_home.Work, cancellationToken);
        long buildId = await _state.StartBuildAsync(spec.Name, DateTimeOffset.UtcNow, cancellationToken);
        try
        {
            TemplateBuildResult result = await RunAsync(spec, options, progress, clock, cancellationToken);
            await _state.FinishBuildAsync(buildId, "succeeded", null, result.FinalHash, DateTimeOffset.UtcNow);
            return result;
        }
        catch (Exception e)
        {
            bool cancelled = e is OperationCanceledException && cancellationToken.IsCancellationRequested;
            await _state.FinishBuildAsync(buildId, cancelled ? "cancelled" : "failed", e.Message, null, DateTimeOffset.UtcNow);
            throw;
        }
    }

    private async Task<TemplateBuildResult> RunAsync(TemplateSpec spec, TemplateBuildOptions options, IProgress<BuildEvent>? progress, Stopwatch clock, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_home.Work);
        int phases = spec.Steps.Count + 2;
        var results = new List<PhaseResult>();
        void Emit(int phase, string title, BuildEventKind kind, string? message = null, string? hash = null, TimeSpan elapsed = default)
            => progress?.Report(new BuildEvent(phase, phases, title, kind, message, hash, elapsed));

        // Base.
        (string hash, Guid layer, TemplateConfig config, bool cached) = await BaseAsync(spec, options, (k, m, h, t) => Emit(0, "base", k, m, h, t), results, cancellationToken);

        // Steps: one session (one build VM) per run of uncached steps.
        LayerSession? session = null;
        IStepSession? vm = null;
        try
        {
            for (int i = 0; i < spec.Steps.Count; i++)
            {
                TemplateStep step = spec.Steps[i];
                int phase = i + 1;
                string title = $"step {phase}/{spec.Steps.Count}: {step}";
                CopySource? copy = step.Kind == StepKind.Copy
                    ? await CopySource.OpenAsync(spec.ContextDirectory ?? Directory.GetCurrentDirectory(), step.Arguments[0], $"step {phase} ({step})", cancellationToken)
                    : null;
                string stepHash = PhaseHash.Step(hash, step, copy?.Hash, spec.Network);
                TemplateConfig next = step.Kind switch
                {
                    StepKind.Env => config.WithEnv(step.Arguments),
                    StepKind.Workdir => config with { Workdir = step.Arguments[0] },
                    StepKind.User => config with { User = step.Arguments[0] },
                    _ => config,
                };
                var sw = Stopwatch.StartNew();
                CacheEntry? hit = options.NoCache ? null : await _state.GetCacheEntryAsync(stepHash, cancellationToken);
                if (hit is null)
                {
                    await using PhaseLock held = await PhaseLock.AcquireAsync(_home.Locks, stepHash, () => Emit(phase, title, BuildEventKind.Waiting, "another build is running this phase"), cancellationToken);
                    hit = options.NoCache ? null : await _state.GetCacheEntryAsync(stepHash, cancellationToken);
                    if (hit is null)
                    {
                        Emit(phase, title, BuildEventKind.Started, hash: stepHash);
                        bool bootsNewVm = session is null;
                        if (session is null)
                        {
                            session = await LayerSession.OpenAsync(_layers, layer, null, _home.Work, cancellationToken);
                            vm = await _runner.StartAsync(new StepSessionRequest(session,
                                ReservedBlocks.Hooks(BuildPhase.Step, config.ReservedMb, bootsNewVm: bootsNewVm), spec.Cpu, spec.MemoryMb, _home.Work,
                                m => Emit(phase, title, BuildEventKind.Output, m), spec.Network), cancellationToken);
                        }
                        await vm!.RunAsync(step, config, copy, line => Emit(phase, title, BuildEventKind.Output, line), cancellationToken);
                        Guid stepLayer = session.HasPendingChanges ? (await session.ExportAsync(cancellationToken)).BuildId : session.Current.BuildId;
                        await _state.PutCacheEntryAsync(new CacheEntry(stepHash, "step", stepLayer, next.ToJson(), null, DateTimeOffset.UtcNow), cancellationToken);
                        hash = stepHash;
                        layer = stepLayer;
                        config = next;
                        cached = false;
                        results.Add(new PhaseResult(title, stepHash, false, stepLayer, sw.Elapsed));
                        Emit(phase, title, BuildEventKind.Done, hash: stepHash, elapsed: sw.Elapsed);
                        continue;
                    }
                }
                // Cached (perhaps by a concurrent build while we waited): continue from its layer;
                // an open session is closed, so the next uncached step boots afresh from this layer.
                await CloseAsync(vm, session);
                (vm, session) = (null, null);
                hash = stepHash;
                layer = hit.LayerBuildId;
                config = TemplateConfig.FromJson(hit.ConfigJson, title);
                cached = true;
                results.Add(new PhaseResult(title, stepHash, true, layer, sw.Elapsed));
                Emit(phase, title, BuildEventKind.Cached, hash: stepHash, elapsed: sw.Elapsed);
            }

            // Finalize.
            string finalTitle = "finalize";
            int finalPhase = spec.Steps.Count + 1;
            string finalHash = PhaseHash.Finalize(hash, spec, _runner.SnapshotIdentity);
            TemplateConfig finalConfig = config with { Cpu = spec.Cpu, MemoryMb = spec.MemoryMb, Start = spec.Start, Ready = spec.Ready };
            var fsw = Stopwatch.StartNew();
            CacheEntry? replaced = null;
            CacheEntry? final = options.NoCache ? null : await _state.GetCacheEntryAsync(finalHash, cancellationToken);
            if (final is null)
            {
                await using PhaseLock held = await PhaseLock.AcquireAsync(_home.Locks, finalHash, () => Emit(finalPhase, finalTitle, BuildEventKind.Waiting, "another build is running this phase"), cancellationToken);
                final = options.NoCache ? null : await _state.GetCacheEntryAsync(finalHash, cancellationToken);
                if (final is null)
                {
                    replaced = options.NoCache ? await _state.GetCacheEntryAsync(finalHash, cancellationToken) : null;
                    Emit(finalPhase, finalTitle, BuildEventKind.Started, hash: finalHash);
                    if (session is null)
                    {
                        // The source layer came from the cache (or from base): this VM is the first to boot on it.
                        session = await LayerSession.OpenAsync(_layers, layer, null, _home.Work, cancellationToken);
                        vm = await _runner.StartAsync(new StepSessionRequest(session,
                            ReservedBlocks.Hooks(BuildPhase.Finalize, config.ReservedMb, sourceCached: cached), spec.Cpu, spec.MemoryMb, _home.Work,
                            m => Emit(finalPhase, finalTitle, BuildEventKind.Output, m), spec.Network), cancellationToken);
                    }
                    // A fresh directory per build: sandboxes restored from an older snapshot map its
                    // memory file copy-on-write, so a published snapshot is never rewritten in place.
                    Directory.CreateDirectory(_home.Snapshots);
                    string snapshots = Path.Combine(_home.Snapshots, $"{finalHash[..16]}-{DateTimeOffset.UtcNow:yyyyMMddHHmmss}-{Guid.NewGuid().ToString("N")[..8]}");
                    string? snapshot = null;
                    try
                    {
                        snapshot = await vm!.FinalizeAsync(finalConfig, snapshots, line => Emit(finalPhase, finalTitle, BuildEventKind.Output, line), cancellationToken);
                        Guid finalLayer = session.HasPendingChanges ? (await session.ExportAsync(cancellationToken)).BuildId : session.Current.BuildId;
                        final = new CacheEntry(finalHash, "finalize", finalLayer, finalConfig.ToJson(), snapshot, DateTimeOffset.UtcNow);
                        await _state.PutCacheEntryAsync(final, cancellationToken);
                    }
                    catch
                    {
                        if (snapshot is not null && Directory.Exists(snapshot))
                        {
                            Directory.Delete(snapshot, recursive: true);
                        }
                        throw;
                    }
                    results.Add(new PhaseResult(finalTitle, finalHash, false, final.LayerBuildId, fsw.Elapsed));
                    Emit(finalPhase, finalTitle, BuildEventKind.Done, hash: finalHash, elapsed: fsw.Elapsed);
                }
            }
            if (results.Count < phases)
            {
                results.Add(new PhaseResult(finalTitle, finalHash, true, final.LayerBuildId, fsw.Elapsed));
                Emit(finalPhase, finalTitle, BuildEventKind.Cached, hash: finalHash, elapsed: fsw.Elapsed);
            }
            await CloseAsync(vm, session);
            (vm, session) = (null, null);

            TemplateConfig stored = TemplateConfig.FromJson(final.ConfigJson, "finalize");
            await _state.PutTemplateAsync(new TemplateRecord(spec.Name, TemplateSpecWriter.ToJson(spec), finalHash, final.LayerBuildId, stored.DiskSizeBytes,
                final.ConfigJson, final.SnapshotDirectory, DateTimeOffset.UtcNow), cancellationToken);
            await RemoveReplacedSnapshotAsync(replaced, final, line => Emit(finalPhase, finalTitle, BuildEventKind.Output, line), cancellationToken);
            return new TemplateBuildResult(spec.Name, finalHash, final.LayerBuildId, stored.DiskSizeBytes, results, clock.Elapsed);
        }
        finally
        {
            await CloseAsync(vm, session);
        }
    }

    private async Task<(string Hash, Guid Layer, TemplateConfig Config, bool Cached)> BaseAsync(
        TemplateSpec spec, TemplateBuildOptions options, Action<BuildEventKind, string?, string?, TimeSpan> emit, List<PhaseResult> results, CancellationToken cancellationToken)
    {
        var sw = Stopwatch.StartNew();
        string hash;
        Func<Task<(Guid, TemplateConfig)>> build;
        IImageSource? source = null;
        try
        {
            if (spec.FromImage is { } reference)
            {
                source = await ImageSources.OpenAsync(reference, options.ImageOptions, cancellationToken);
                ResolvedImage image = await source.ResolveAsync(cancellationToken);
                hash = PhaseHash.BaseFromImage(image.ContentDigest, options.Environment, spec.DiskSizeBytes, spec.ReservedMb);
                IImageSource opened = source;
                build = () => BuildFromImageAsync(spec, options, opened, image, m => emit(BuildEventKind.Output, m, null, default), cancellationToken);
            }
            else
            {
                TemplateRecord parent = await _state.GetTemplateAsync(spec.FromTemplate!, cancellationToken)
                    ?? throw new VesselException(VesselErrorReason.NotFound, $"fromTemplate: there is no template named '{spec.FromTemplate}'; build it first (vessel template build).");
                long size = spec.DiskSizeBytes ?? parent.DiskSizeBytes;
                hash = PhaseHash.BaseFromTemplate(parent.FinalHash, options.Environment, size, spec.ReservedMb);
                build = () => BuildFromTemplateAsync(spec, options, parent, size, m => emit(BuildEventKind.Output, m, null, default), cancellationToken);
            }

            CacheEntry? hit = options.NoCache ? null : await _state.GetCacheEntryAsync(hash, cancellationToken);
            if (hit is null)
            {
                await using PhaseLock held = await PhaseLock.AcquireAsync(_home.Locks, hash, () => emit(BuildEventKind.Waiting, "another build is running this phase", null, default), cancellationToken);
                hit = options.NoCache ? null : await _state.GetCacheEntryAsync(hash, cancellationToken);
                if (hit is null)
                {
                    emit(BuildEventKind.Started, null, hash, default);
                    (Guid layer, TemplateConfig config) = await build();
                    await _state.PutCacheEntryAsync(new CacheEntry(hash, "base", layer, config.ToJson(), null, DateTimeOffset.UtcNow), cancellationToken);
                    results.Add(new PhaseResult("base", hash, false, layer, sw.Elapsed));
                    emit(BuildEventKind.Done, null, hash, sw.Elapsed);
                    return (hash, layer, config, false);
                }
            }
            results.Add(new PhaseResult("base", hash, true, hit.LayerBuildId, sw.Elapsed));
            emit(BuildEventKind.Cached, null, hash, sw.Elapsed);
            return (hash, hit.LayerBuildId, TemplateConfig.FromJson(hit.ConfigJson, "base"), true);
        }
        finally
        {
            if (source is not null)
            {
                await source.DisposeAsync();
            }
        }
    }

    private async Task<(Guid, TemplateConfig)> BuildFromImageAsync(TemplateSpec spec, TemplateBuildOptions options, IImageSource source, ResolvedImage image, Action<string> report, CancellationToken cancellationToken)
    {
        using TempDirectory temp = TempDirectory.Create(WorkLeftovers.Prefix("base"), _home.Work);
        string rootfs = temp.Combine("rootfs.ext4");
        report($"writing the rootfs of {source.Description} ({image.Layers.Count} layers)");
        RootfsBuildResult built = await RootfsBuilder.BuildAsync(source, rootfs,
            new RootfsBuildOptions { SizeBytes = spec.DiskSizeBytes, Hostname = options.Hostname, BusyboxPath = options.BusyboxPath }, null, cancellationToken);
        if (built.ContentDigest != image.ContentDigest)
        {
            throw new VesselException(VesselErrorReason.Conflict,
                $"{source.Description} changed during the build ({image.ContentDigest} became {built.ContentDigest}); build again.");
        }
        await PreBootHook.RunAllAsync(ReservedBlocks.Hooks(BuildPhase.Base, spec.ReservedMb), new PreBootContext(rootfs, temp.Path), report, cancellationToken);
        report("storing the base layer");
        BuildHeader header = await _layers.ImportAsync(rootfs, cancellationToken: cancellationToken);
        var config = new TemplateConfig
        {
            Env = image.Config.Env,
            Workdir = string.IsNullOrEmpty(image.Config.WorkingDir) ? "/" : image.Config.WorkingDir,
            User = string.IsNullOrEmpty(image.Config.User) ? "root" : image.Config.User,
            DiskSizeBytes = header.Size,
            ReservedMb = spec.ReservedMb,
            ImageDigest = image.ContentDigest,
            ImageConfigJson = Encoding.UTF8.GetString(image.Config.ToJson()),
        };
        return (header.BuildId, config);
    }

    private async Task<(Guid, TemplateConfig)> BuildFromTemplateAsync(TemplateSpec spec, TemplateBuildOptions options, TemplateRecord parent, long size, Action<string> report, CancellationToken cancellationToken)
    {
        TemplateConfig parentConfig = TemplateConfig.FromJson(parent.ConfigJson, $"template '{parent.Name}'");
        ImageConfig imageConfig = parentConfig.ImageConfigJson is { } json
            ? ImageConfig.Parse(Encoding.UTF8.GetBytes(json), $"template '{parent.Name}' image config")
            : ImageConfig.Empty;
        IReadOnlyList<ProvisioningFile> files = Provisioning.Files(new ProvisioningOptions { Hostname = options.Hostname, Config = imageConfig, BusyboxPath = options.BusyboxPath });
        BuildHeader header = await TemplateResize.BuildBaseAsync(_layers, parent.LayerBuildId, size, files,
            ReservedBlocks.Hooks(BuildPhase.Base, spec.ReservedMb), _home.Work, report, cancellationToken);
        TemplateConfig config = parentConfig with { DiskSizeBytes = header.Size, ReservedMb = spec.ReservedMb, Start = null, Ready = null };
        return (header.BuildId, config);
    }

    /// <summary>
    /// A --no-cache rebuild replaced the finalize entry: its old snapshot goes now unless something
    /// still names it (another template built from the same spec, a daemon's sandbox, a live sandbox
    /// resumed from it); then 'vessel gc' takes it once that is over. The old layers are gc's.
    /// </summary>
    private async Task RemoveReplacedSnapshotAsync(CacheEntry? replaced, CacheEntry final, Action<string> report, CancellationToken cancellationToken)
    {
        if (replaced?.SnapshotDirectory is not { } old || old == final.SnapshotDirectory || !Directory.Exists(old))
        {
            return;
        }
        HomeReferences refs = await HomeReferences.ReadAsync(_home, _state, cancellationToken);
        if (refs.NamesSnapshot(old))
        {
            report($"the replaced snapshot {old} is still in use: 'vessel gc' removes it once nothing uses it");
            return;
        }
        Directory.Delete(old, recursive: true);
        report($"removed the replaced snapshot {old}");
    }

    private static async Task CloseAsync(IStepSession? vm, LayerSession? session)
    {
        try
        {
            if (vm is not null)
            {
                await vm.DisposeAsync();
            }
        }
        finally
        {
            session?.Dispose();
        }
    }
}
