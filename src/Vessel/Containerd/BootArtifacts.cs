using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Vessel.Common;
using Vessel.Containerd.Api.Snapshots;
using Vessel.Containerd.Api.Types;
using Vessel.Interop;

namespace Vessel.Containerd;

/// <summary>How artifacts are fetched.</summary>
internal enum ArtifactMode
{
    /// <summary>A read-only snapshot view held by a lease, mounted, files bind-mounted read-only.</summary>
    View,

    /// <summary>The files copied out of the layer blobs, streamed from the content store.</summary>
    Extract,
}

/// <summary>What to fetch, from where, into where.</summary>
internal sealed record ArtifactRequest
{
    public required string Address { get; init; }

    public required string Namespace { get; init; }

    public required string Image { get; init; }

    public required IReadOnlyList<string> Files { get; init; }

    /// <summary>The container's bundle: holds the state file and the view's mount point.</summary>
    public required string Bundle { get; init; }

    public required string OutDirectory { get; init; }

    /// <summary>Null: the configured mode (<see cref="BootArtifacts.ConfiguredMode"/>).</summary>
    public ArtifactMode? Mode { get; init; }

    public string Snapshotter { get; init; } = ContainerdClient.DefaultSnapshotter;

    /// <summary>After this, containerd's GC may drop the lease (and so the view) if cleanup never ran.</summary>
    public TimeSpan LeaseExpiry { get; init; } = TimeSpan.FromHours(24);

    /// <summary>Extract when the view cannot be made.</summary>
    public bool AllowFallback { get; init; } = true;

    public IProgress<string>? Progress { get; init; }

    /// <summary>Called after each step of the view path ("state", "lease", "view", "mount", "bind"); tests use it to crash there.</summary>
    public Func<string, CancellationToken, Task>? StepHook { get; init; }
}

/// <summary>The outcome: which path was taken and where the files are.</summary>
internal sealed record ArtifactResult(ArtifactMode Mode, string? FallbackReason, string Image, IReadOnlyList<FileRecord> Files, string? ViewKey, string? LeaseId, bool Resumed);

/// <summary>What cleanup removed.</summary>
internal sealed record CleanupResult(bool HadState, IReadOnlyList<string> Removed, IReadOnlyList<string> Warnings);

/// <summary>
/// Boot artifacts (kernel, initrd, config) from a container image in containerd, through a
/// per-bundle snapshot view or by extraction. Every step is recorded in the bundle's state
/// file before it happens, so <see cref="CleanupAsync"/> undoes exactly what exists, in
/// order (binds, view mount, view, lease), from any process, after a crash at any point.
/// </summary>
internal static class BootArtifacts
{
    /// <summary>Per-container opt-in: this annotation in the bundle's config.json ("true"/"false").</summary>
    public const string ViewAnnotation = "dev.vessel.containerd.snapshot-view";

    public const string ExpireLabel = "containerd.io/gc.expire";
    public const string BundleLabel = "dev.vessel.bundle";

    private static readonly TimeSpan LockWait = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan RollbackDeadline = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The mode when none is asked for: the view when the bundle's annotation or the host's
    /// environment enables it (the annotation wins), extraction otherwise. Off unless enabled.
    /// </summary>
    public static ArtifactMode ConfiguredMode(string bundle)
    {
        string config = Path.Combine(bundle, "config.json");
        if (File.Exists(config))
        {
            try
            {
                using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(config));
                if (doc.RootElement.TryGetProperty("annotations", out JsonElement a) && a.ValueKind == JsonValueKind.Object
                    && a.TryGetProperty(ViewAnnotation, out JsonElement v) && v.ValueKind == JsonValueKind.String)
                {
                    return IsTrue(v.GetString()) ? ArtifactMode.View : ArtifactMode.Extract;
                }
            }
            catch (JsonException e)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"{config} is not valid JSON: {e.Message}", e);
            }
        }
        return IsTrue(VesselSettings.Current.ContainerdSnapshotView) ? ArtifactMode.View : ArtifactMode.Extract;
    }

    /// <summary>The view key and lease id for a bundle: stable, so a retry finds what an earlier try made.</summary>
    public static (string ViewKey, string LeaseId) NamesFor(string bundle)
    {
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(bundle)))[..20];
        return ($"vessel-view-{hash}", $"vessel-{hash}");
    }

    public static async Task<ArtifactResult> PrepareAsync(ArtifactRequest request, CancellationToken cancellationToken)
    {
        if (request.Files.Count == 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "Name at least one file to fetch (--file /boot/vmlinuz).");
        }
        string bundle = FullBundlePath(request.Bundle);
        var files = request.Files.Select(ImagePath.CleanRequested).Distinct(StringComparer.Ordinal).ToList();
        string address = request.Address.StartsWith("unix://", StringComparison.Ordinal) ? request.Address["unix://".Length..] : request.Address;
        request = request with { Bundle = bundle, Files = files, Address = Path.GetFullPath(address) };
        using FileStream bundleLock = await LockAsync(bundle, cancellationToken);
        ArtifactMode mode = request.Mode ?? ConfiguredMode(bundle);

        ViewState? existing = ViewState.Load(bundle);
        if (existing is not null)
        {
            string mismatch = Mismatch(existing, request);
            if (mismatch.Length > 0)
            {
                throw new VesselException(VesselErrorReason.Conflict,
                    $"Bundle {bundle} already holds artifacts of '{existing.Image}' ({mismatch} differs); run 'vessel containerd cleanup --bundle {bundle}' first.");
            }
            if (existing.Phase == "ready")
            {
                return ResultOf(existing, fallbackReason: null, resumed: true);
            }
            if (existing.Mode != "view" || mode != ArtifactMode.View)
            {
                // An interrupted extraction (or a mode change): start over.
                using var deadline = new CancellationTokenSource(RollbackDeadline);
                await CleanupCoreAsync(bundle, existing, addressOverride: null, deadline.Token);
                existing = null;
            }
        }

        using var client = new ContainerdClient(request.Address, request.Namespace);
        ContainerdImage image = await ContainerdImage.ResolveAsync(client, request.Image, cancellationToken);
        string? fallbackReason = null;
        if (mode == ArtifactMode.View)
        {
            try
            {
                return await PrepareViewAsync(client, image, request, existing, cancellationToken);
            }
            catch (VesselException e) when (request.AllowFallback && e.Reason is VesselErrorReason.Unavailable or VesselErrorReason.Unsupported)
            {
                fallbackReason = e.Message;
                request.Progress?.Report($"view unavailable, extracting instead: {e.Message}");
            }
        }
        return await PrepareExtractAsync(client, image, request, fallbackReason, cancellationToken);
    }

    /// <summary>
    /// Removes what the bundle's state records: binds, then the view mount (never while a bind
    /// is live), then the view snapshot and the lease, then the state. Idempotent: missing
    /// things are skipped, and a bundle without state is a no-op.
    /// </summary>
    public static async Task<CleanupResult> CleanupAsync(string bundle, string? addressOverride, CancellationToken cancellationToken)
    {
        string full = FullBundlePath(bundle);
        if (!Directory.Exists(full))
        {
            return new CleanupResult(false, [], [$"bundle {full} does not exist"]);
        }
        CleanupResult result;
        using (FileStream bundleLock = await LockAsync(full, cancellationToken))
        {
            ViewState? state = ViewState.Load(full);
            if (state is null)
            {
                result = new CleanupResult(false, [], []);
            }
            else
            {
                result = await CleanupCoreAsync(full, state, addressOverride, cancellationToken);
            }
        }
        File.Delete(Path.Combine(full, ViewState.LockFileName));
        return result;
    }

    private static async Task<ArtifactResult> PrepareViewAsync(
        ContainerdClient client, ContainerdImage image, ArtifactRequest request, ViewState? existing, CancellationToken cancellationToken)
    {
        string bundle = request.Bundle;
        Info parent;
        try
        {
            parent = await client.StatSnapshotAsync(request.Snapshotter, image.ChainId, cancellationToken);
        }
        catch (VesselException e) when (e.Reason == VesselErrorReason.NotFound)
        {
            throw new VesselException(VesselErrorReason.Unavailable,
                $"Image '{image.Name}' is not unpacked for snapshotter '{request.Snapshotter}' (no snapshot {image.ChainId}); unpack it (ctr images unpack) to use a view.", e);
        }
        if (parent.Kind != Kind.Committed)
        {
            throw new VesselException(VesselErrorReason.Unavailable, $"Snapshot {image.ChainId} of '{image.Name}' is {parent.Kind}, not committed.");
        }

        (string viewKey, string leaseId) = NamesFor(bundle);
        bool resumed = existing is not null;
        ViewState state = existing ?? NewState("view", client, image, request);
        if (existing is null)
        {
            state.LeaseId = leaseId;
            state.ViewKey = viewKey;
            state.Mountpoint = Path.Combine(bundle, ViewState.MountDirectoryName);
        }
        try
        {
            // Write-ahead: everything is named in the bundle before it exists.
            OutputTree output = OutputTree.Resolve(request.OutDirectory);
            if (state.Files.Count == 0)
            {
                state.OutDirectory = output.Root;
                state.Files = request.Files.Select(f => new FileRecord { Path = f, Target = output.TargetFor(f) }).ToList();
            }
            IReadOnlyList<string> plan = output.Plan(state.Files.Select(f => f.Target), state.Created);
            state.Created.AddRange(plan.Where(p => !state.Created.Contains(p)));
            state.Save(bundle);
            await StepAsync(request, "state", cancellationToken);

            var labels = new Dictionary<string, string>
            {
                [ExpireLabel] = DateTime.UtcNow.Add(request.LeaseExpiry).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
                [BundleLabel] = bundle,
            };
            try
            {
                await client.CreateLeaseAsync(state.LeaseId!, labels, cancellationToken);
            }
            catch (VesselException e) when (e.Reason == VesselErrorReason.AlreadyExists)
            {
                // A retry: the lease from the earlier try still holds the view.
            }
            await StepAsync(request, "lease", cancellationToken);

            IReadOnlyList<Mount> mounts;
            try
            {
                mounts = await client.ViewSnapshotAsync(state.Snapshotter, state.ViewKey!, image.ChainId,
                    new Dictionary<string, string> { [BundleLabel] = bundle }, state.LeaseId, cancellationToken);
            }
            catch (VesselException e) when (e.Reason == VesselErrorReason.AlreadyExists)
            {
                Info view = await client.StatSnapshotAsync(state.Snapshotter, state.ViewKey!, cancellationToken);
                if (view.Kind != Kind.View || view.Parent != image.ChainId)
                {
                    throw new VesselException(VesselErrorReason.Conflict,
                        $"Snapshot '{state.ViewKey}' exists as a {view.Kind} of '{view.Parent}', not a view of {image.ChainId}; remove it (ctr snapshots rm) and retry.", e);
                }
                mounts = await client.SnapshotMountsAsync(state.Snapshotter, state.ViewKey!, cancellationToken);
            }
            state.Mounts = mounts.Select(m => new MountRecord { Type = m.Type, Source = m.Source, Options = [.. m.Options] }).ToList();
            await StepAsync(request, "view", cancellationToken);

            if (mounts.Count != 1)
            {
                throw new VesselException(VesselErrorReason.Unsupported, $"The view of '{image.Name}' has {mounts.Count} mounts; Vessel mounts views of exactly one.");
            }
            string mountpoint = state.Mountpoint!;
            Directory.CreateDirectory(mountpoint);
            if (!LinuxMount.IsMountPoint(mountpoint))
            {
                LinuxMount.MountReadOnly(mounts[0].Type, mounts[0].Source, mounts[0].Options, mountpoint);
            }
            await StepAsync(request, "mount", cancellationToken);

            var sources = state.Files.Select(f => ImagePath.ResolveInTree(mountpoint, f.Path, image.Name)).ToList();
            OutputTree.Create(plan, state.Files.Select(f => f.Target).ToHashSet(StringComparer.Ordinal));
            foreach (var (file, source) in state.Files.Zip(sources))
            {
                if (!LinuxMount.IsMountPoint(file.Target))
                {
                    LinuxMount.BindFileReadOnly(source, file.Target);
                }
                request.Progress?.Report($"view: {file.Path} -> {file.Target}");
            }
            await StepAsync(request, "bind", cancellationToken);

            state.Phase = "ready";
            state.Save(bundle);
            return ResultOf(state, fallbackReason: null, resumed);
        }
        catch (Exception e)
        {
            await RollbackAsync(bundle, state, e);
            throw;
        }
    }

    /// <summary>The state of a new preparation in <paramref name="mode"/> ("view" or "extract"): which containerd, image and snapshotter it uses.</summary>
    private static ViewState NewState(string mode, ContainerdClient client, ContainerdImage image, ArtifactRequest request) => new()
    {
        Mode = mode,
        Address = client.Address,
        Namespace = client.Namespace,
        Snapshotter = request.Snapshotter,
        Image = request.Image,
        ChainId = image.ChainId,
    };

    private static async Task<ArtifactResult> PrepareExtractAsync(
        ContainerdClient client, ContainerdImage image, ArtifactRequest request, string? fallbackReason, CancellationToken cancellationToken)
    {
        string bundle = request.Bundle;
        ViewState state = NewState("extract", client, image, request);
        try
        {
            OutputTree output = OutputTree.Resolve(request.OutDirectory);
            state.OutDirectory = output.Root;
            state.Files = request.Files.Select(f => new FileRecord { Path = f, Target = output.TargetFor(f) }).ToList();
            IReadOnlyList<string> plan = output.Plan(state.Files.Select(f => f.Target), []);
            state.Created.AddRange(plan);
            state.Save(bundle);
            OutputTree.Create(plan, state.Files.Select(f => f.Target).ToHashSet(StringComparer.Ordinal));
            var extractor = new LayerExtractor(client, image, request.Progress);
            await extractor.ExtractAsync(state.Files.ToDictionary(f => f.Path, f => f.Target, StringComparer.Ordinal), cancellationToken);
            state.Phase = "ready";
            state.Save(bundle);
            return ResultOf(state, fallbackReason, resumed: false);
        }
        catch (Exception e)
        {
            await RollbackAsync(bundle, state, e);
            throw;
        }
    }

    /// <summary>Undoes a failed or cancelled create; it has its own deadline, since the cancellation that caused it must not cut it short.</summary>
    private static async Task RollbackAsync(string bundle, ViewState state, Exception cause)
    {
        try
        {
            if (File.Exists(ViewState.PathIn(bundle)))
            {
                using var deadline = new CancellationTokenSource(RollbackDeadline);
                await CleanupCoreAsync(bundle, state, addressOverride: null, deadline.Token);
            }
        }
        catch (Exception rollback) when (rollback is VesselException or IOException or UnauthorizedAccessException or OperationCanceledException)
        {
            throw new VesselException(VesselErrorReason.ToolFailed,
                $"{cause.Message} Rolling back also failed: {rollback.Message} Run 'vessel containerd cleanup --bundle {bundle}'.", cause);
        }
    }

    private static async Task<CleanupResult> CleanupCoreAsync(string bundle, ViewState state, string? addressOverride, CancellationToken cancellationToken)
    {
        var removed = new List<string>();
        var warnings = new List<string>();

        // 1. Binds first: the view must outlive every bind taken from it.
        foreach (FileRecord file in Enumerable.Reverse(state.Files))
        {
            if (LinuxMount.UnmountAll(file.Target) > 0)
            {
                removed.Add($"bind {file.Target}");
            }
        }

        // 2. What was created in the output directory, deepest last-created first.
        foreach (string path in Enumerable.Reverse(state.Created))
        {
            int? type = UnixFile.TypeOf(path);
            if (type is null)
            {
                continue;
            }
            if (LinuxMount.IsMountPoint(path))
            {
                throw new VesselException(VesselErrorReason.Conflict, $"{path} is still a mount point; unmount it, then clean up again.");
            }
            if (type == LibC.SIfDir)
            {
                if (Directory.EnumerateFileSystemEntries(path).Any())
                {
                    warnings.Add($"kept {path}: it holds files Vessel did not create");
                    continue;
                }
                Directory.Delete(path);
            }
            else
            {
                File.Delete(path);
            }
            removed.Add(path);
        }

        // 3. The view mount, now that no bind uses it.
        if (state.Mountpoint is { } mountpoint)
        {
            if (LinuxMount.UnmountAll(mountpoint) > 0)
            {
                removed.Add($"mount {mountpoint}");
            }
            if (Directory.Exists(mountpoint))
            {
                Directory.Delete(mountpoint);
            }
        }

        // 4. The view and the lease in containerd.
        if (state.ViewKey is not null || state.LeaseId is not null)
        {
            using var client = new ContainerdClient(addressOverride ?? state.Address, state.Namespace);
            if (state.ViewKey is { } key)
            {
                try
                {
                    await client.RemoveSnapshotAsync(state.Snapshotter, key, cancellationToken);
                    removed.Add($"view {key}");
                }
                catch (VesselException e) when (e.Reason == VesselErrorReason.NotFound)
                {
                }
            }
            if (state.LeaseId is { } lease)
            {
                try
                {
                    await client.DeleteLeaseAsync(lease, sync: false, cancellationToken);
                    removed.Add($"lease {lease}");
                }
                catch (VesselException e) when (e.Reason == VesselErrorReason.NotFound)
                {
                }
            }
        }

        // 5. The record, last: until here a crash leaves it for the next cleanup.
        ViewState.Delete(bundle);
        return new CleanupResult(true, removed, warnings);
    }

    private static async Task StepAsync(ArtifactRequest request, string step, CancellationToken cancellationToken)
    {
        if (request.StepHook is { } hook)
        {
            await hook(step, cancellationToken);
        }
    }

    private static ArtifactResult ResultOf(ViewState state, string? fallbackReason, bool resumed)
        => new(state.Mode == "view" ? ArtifactMode.View : ArtifactMode.Extract, fallbackReason, state.Image, state.Files, state.ViewKey, state.LeaseId, resumed);

    private static string Mismatch(ViewState state, ArtifactRequest request)
    {
        if (state.Image != request.Image)
        {
            return "image";
        }
        if (state.Namespace != request.Namespace)
        {
            return "namespace";
        }
        if (!state.Files.Select(f => f.Path).SequenceEqual(request.Files, StringComparer.Ordinal))
        {
            return "file list";
        }
        string outDir = Path.GetFullPath(request.OutDirectory).TrimEnd('/');
        if (state.OutDirectory.Length > 0 && state.OutDirectory != outDir && !(Directory.Exists(outDir) && new DirectoryInfo(outDir).ResolveLinkTarget(true)?.FullName.TrimEnd('/') == state.OutDirectory))
        {
            return "output directory";
        }
        return string.Empty;
    }

    private static string FullBundlePath(string bundle)
    {
        string full = Path.GetFullPath(bundle).TrimEnd('/');
        if (!Directory.Exists(full))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Bundle directory {full} does not exist.");
        }
        return full;
    }

    /// <summary>One artifacts or cleanup call per bundle at a time (task Delete and shim Stop may race).</summary>
    private static async Task<FileStream> LockAsync(string bundle, CancellationToken cancellationToken)
    {
        string path = Path.Combine(bundle, ViewState.LockFileName);
        DateTime deadline = DateTime.UtcNow + LockWait;
        while (true)
        {
            try
            {
                // FileShare.None takes an exclusive flock(2) on Unix.
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(100, cancellationToken);
            }
            catch (IOException e)
            {
                throw new VesselException(VesselErrorReason.Timeout, $"Bundle {bundle} is locked by another vessel process for over {LockWait.TotalSeconds:0} s.", e);
            }
        }
    }

    private static bool IsTrue(string? value) => value is not null && (value == "1" || value.Equals("true", StringComparison.OrdinalIgnoreCase));
}
