using Vessel.Blocks;
using Vessel.Common;
using Vessel.Interop;
using Vessel.Rootfs;
using Vessel.Sandboxes;
using Vessel.State;

namespace Vessel.Storage;

/// <summary>One thing <c>vessel gc</c> removes (or would remove): its kind, where it is, the bytes it holds on disk and why it goes.</summary>
public sealed record GcItem(string Kind, string Path, long Bytes, string Reason);

public sealed record GcOptions
{
    /// <summary>List what would go, remove nothing (not even leftovers of dead processes).</summary>
    public bool DryRun { get; init; }

    /// <summary>The kit cache whose unused kits go (its <c>kits/&lt;id&gt;/</c>), or null to leave kits alone.</summary>
    public string? KitCache { get; init; }

    /// <summary>The kit this Vessel boots: always kept. Kits are collected only when it is known.</summary>
    public string? CurrentKitId { get; init; }

    /// <summary>Only the image caches (<c>vessel images prune</c>): pods' block lowers and rootfs files, and unpacked trees.</summary>
    public bool ImagesOnly { get; init; }

    /// <summary>
    /// The state shared by the nodes of a cluster (a PostgreSQL location, <c>VESSEL_STATE</c>) that
    /// this home's rows live in, or null for the home's own SQLite file.
    /// </summary>
    public string? SharedState { get; init; }

    /// <summary>This node's name: on a <see cref="SharedState"/>, only its rows (and those of no node) pin the home's image caches.</summary>
    public string Node { get; init; } = string.Empty;
}

/// <summary>What a collection found and did.</summary>
public sealed record GcResult(IReadOnlyList<GcItem> Items, IReadOnlyList<string> Errors, int FailedBuilds)
{
    public long TotalBytes => Items.Sum(i => i.Bytes);
}

/// <summary>
/// <c>vessel gc</c> (docs/ARCHITECTURE.md, "Ownership and reclaim"): under the home's
/// <see cref="GcLock"/> held exclusive (so no template build or daemon pause is half way through
/// publishing), removes what dead processes left (sandbox directories, work caches, partial
/// files; their 'running' build rows become failed), then everything that nothing in use
/// reaches (<see cref="HomeReferences"/>): block layers that no template, daemon sandbox or live
/// overlay uses, directly or as an ancestor; the phase cache entries on those layers; snapshot
/// directories that no template, kept cache entry, daemon sandbox or live sandbox names; kits
/// that neither this Vessel, a kept snapshot nor a running VM uses; and cached rootfs images
/// that no run is building or copying. The dry run computes the same list and removes nothing.
/// </summary>
internal sealed class GarbageCollector(VesselHome home, GcOptions options)
{
    private readonly VesselHome _home = home;
    private readonly GcOptions _options = options;

    /// <summary>Collects; <paramref name="waiting"/> is told once if builds or pauses hold the home's lock.</summary>
    public async Task<GcResult> RunAsync(Action<string>? waiting, CancellationToken cancellationToken)
    {
        using GcLock held = await GcLock.ExclusiveAsync(_home,
            () => waiting?.Invoke($"waiting for the template builds and pauses in {_home} to finish"), cancellationToken);
        var items = new List<GcItem>();
        var errors = new List<string>();
        StateStore? state = _options.SharedState is { } shared ? await StateStore.OpenAsync(shared, cancellationToken)
            : File.Exists(_home.StateDatabase) ? await StateStore.OpenAsync(_home.StateDatabase, cancellationToken) : null;
        if (_options.ImagesOnly)
        {
            RemoveImages(await PodLower.PausedAsync(await PinningSandboxesAsync(state, cancellationToken), cancellationToken), items, errors);
            await RemoveTreesAsync(items, errors, cancellationToken);
            return new GcResult(items, errors, 0);
        }
        int failedBuilds = await CollectLeftoversAsync(state, items, cancellationToken);

        HomeReferences refs = await HomeReferences.ReadAsync(_home, state, cancellationToken);
        LayerStore? layers = Directory.Exists(_home.Blocks) ? LayerStore.OpenDirectory(_home.Blocks) : null;
        (List<BuildHeader> doomedLayers, HashSet<Guid> keptLayers) = await PlanLayersAsync(layers, refs, _options.SharedState is not null, cancellationToken);
        List<CacheEntry> doomedEntries = refs.CacheEntries.Where(e => !keptLayers.Contains(e.LayerBuildId)).ToList();
        HashSet<string> doomedHashes = doomedEntries.Select(e => e.Hash).ToHashSet(StringComparer.Ordinal);
        List<string> snapshots = Directory.Exists(_home.Snapshots) ? Directory.EnumerateDirectories(_home.Snapshots).ToList() : [];
        List<string> doomedSnapshots = snapshots.Where(d => !refs.NamesSnapshot(d, doomedHashes)).ToList();
        List<string> doomedKits = await PlanKitsAsync(snapshots.Except(doomedSnapshots), cancellationToken);

        if (state is not null && doomedEntries.Count > 0)
        {
            items.AddRange(doomedEntries.Select(e => new GcItem("cache", $"{e.Phase} {e.Hash[..16]}", 0, "a phase cache entry whose layer no template or sandbox uses")));
            if (!_options.DryRun)
            {
                // Rows first: no entry may ever name a removed layer or snapshot.
                await state.DeleteCacheEntriesAsync(doomedHashes, cancellationToken);
            }
        }
        Remove(items, errors, doomedSnapshots, "snapshot", "a snapshot that no template, cache entry or sandbox names", dir => Directory.Delete(dir, recursive: true));
        await RemoveLayersAsync(layers, doomedLayers, items, errors, cancellationToken);
        Remove(items, errors, doomedKits, "kit", "a guest kit that this Vessel, the kept snapshots and running VMs do not use", dir => Directory.Delete(dir, recursive: true));
        RemoveImages(await PodLower.PausedAsync(await PinningSandboxesAsync(state, cancellationToken), cancellationToken), items, errors);
        await RemoveTreesAsync(items, errors, cancellationToken);
        return new GcResult(items, errors, failedBuilds);
    }

    /// <summary>
    /// The rows whose paused pods pin this home's image caches: every row of the home's own
    /// state; of a shared state, this node's and those of no node (another node's rows name its
    /// own home, which may lie at the same path here).
    /// </summary>
    private async Task<IReadOnlyList<SandboxRecord>> PinningSandboxesAsync(StateStore? state, CancellationToken cancellationToken)
        => state is null ? []
            : _options.SharedState is null ? await state.ListSandboxesAsync(cancellationToken)
            : await state.ListSandboxesAsync(_options.Node, cancellationToken);

    /// <summary>Leftovers of processes that are gone (what <c>vessel sandbox sweep</c> removes): listed with their sizes, then removed unless dry.</summary>
    private async Task<int> CollectLeftoversAsync(StateStore? state, List<GcItem> items, CancellationToken cancellationToken)
    {
        const string why = "left by a process that is gone";
        items.AddRange((await SandboxManager.FindLeftoversAsync(_home.Root, cancellationToken)).Select(d => new GcItem("leftover", d, UnixFile.DiskUsage(d), "a sandbox directory " + why)));
        items.AddRange(OverlayDevice.FindLeftoverCaches(_home.Work).Select(f => new GcItem("leftover", f, UnixFile.DiskUsage(f), "a work cache " + why)));
        items.AddRange(WorkLeftovers.Find(_home.Work).Select(d => new GcItem("leftover", d, UnixFile.DiskUsage(d), "a work directory " + why)));
        items.AddRange(OutputFile.FindLeftovers(_home.Images).Select(f => new GcItem("leftover", f, UnixFile.DiskUsage(f), "a partial image " + why)));
        if (_options.DryRun)
        {
            return 0;
        }
        await SandboxManager.SweepDirectoryAsync(_home.Root, cancellationToken);
        OverlayDevice.ReclaimLeftoverCaches(_home.Work);
        await WorkLeftovers.ReclaimAsync(_home.Work, cancellationToken);
        OutputFile.ReclaimLeftovers(_home.Images);
        return state is null ? 0 : await state.FailBuildsOfDeadOwnersAsync(DateTimeOffset.UtcNow, cancellationToken);
    }

    /// <summary>
    /// The layers to remove (children first) and the closure of what is kept: the roots, and every
    /// build their data or base chain reaches. On a shared state the cache entries are roots too:
    /// they are every node's, so none is removed, and the layers they name stay.
    /// </summary>
    private static async Task<(List<BuildHeader> Doomed, HashSet<Guid> Kept)> PlanLayersAsync(LayerStore? layers, HomeReferences refs, bool shared, CancellationToken cancellationToken)
    {
        var kept = new HashSet<Guid>();
        if (layers is null)
        {
            if (shared)
            {
                kept.UnionWith(refs.CacheEntries.Select(e => e.LayerBuildId));
            }
            return ([], kept);
        }
        Dictionary<Guid, BuildHeader> headers = (await layers.ListAsync(cancellationToken)).ToDictionary(h => h.BuildId);
        var pending = new Stack<Guid>(shared ? refs.RootLayers.Concat(refs.CacheEntries.Select(e => e.LayerBuildId)) : refs.RootLayers);
        while (pending.TryPop(out Guid id))
        {
            if (!kept.Add(id) || !headers.TryGetValue(id, out BuildHeader? header))
            {
                continue;
            }
            foreach (Guid used in header.ReferencedBuilds)
            {
                pending.Push(used);
            }
            if (header.BaseBuildId != Guid.Empty)
            {
                pending.Push(header.BaseBuildId);
            }
        }
        return (headers.Values.Where(h => !kept.Contains(h.BuildId)).OrderByDescending(h => h.Generation).ToList(), kept);
    }

    private async Task RemoveLayersAsync(LayerStore? layers, List<BuildHeader> doomed, List<GcItem> items, List<string> errors, CancellationToken cancellationToken)
    {
        if (layers is null)
        {
            return;
        }
        string builds = Path.Combine(_home.Blocks, "builds");
        foreach (BuildHeader header in doomed)
        {
            string dir = Path.Combine(builds, header.BuildId.ToString("D"));
            items.Add(new GcItem("layer", dir, UnixFile.DiskUsage(dir), "a block layer that no template, cache entry or sandbox uses"));
            if (_options.DryRun)
            {
                continue;
            }
            try
            {
                // Only doomed builds use a doomed build (what is kept is closed under use), and children go first.
                await layers.Storage.DeleteAsync(header.BuildId, cancellationToken);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or VesselException)
            {
                errors.Add($"cannot remove layer {header.BuildId}: {e.Message}");
            }
        }
    }

    /// <summary>Kit directories to remove: none unless the kit cache and the current kit are known.</summary>
    private async Task<List<string>> PlanKitsAsync(IEnumerable<string> keptSnapshots, CancellationToken cancellationToken)
    {
        string? kits = _options.KitCache is { } cache ? Path.Combine(cache, "kits") : null;
        if (kits is null || _options.CurrentKitId is null || !Directory.Exists(kits))
        {
            return [];
        }
        var keep = new HashSet<string>(StringComparer.Ordinal) { _options.CurrentKitId };
        foreach (string snapshot in keptSnapshots)
        {
            if (await SandboxSnapshot.TryReadKitIdAsync(snapshot, cancellationToken) is { } kit)
            {
                keep.Add(kit);
            }
        }
        keep.UnionWith(KitsOfRunningProcesses(kits));
        return Directory.EnumerateDirectories(kits)
            .Where(d => !Path.GetFileName(d).StartsWith('.') && !keep.Contains(Path.GetFileName(d)))
            .ToList();
    }

    /// <summary>Every process's command line (NULs as spaces): what running VMs of any home have open by name.</summary>
    private static List<string> CommandLines()
    {
        var lines = new List<string>();
        foreach (string proc in Directory.EnumerateDirectories("/proc"))
        {
            try
            {
                lines.Add(File.ReadAllText(Path.Combine(proc, "cmdline")).Replace('\0', ' '));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Gone, or not a process.
            }
        }
        return lines;
    }

    /// <summary>Kit ids named in the command line of any process (a VM of any home, or of another Vessel, booting from this cache).</summary>
    private static HashSet<string> KitsOfRunningProcesses(string kits)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        string prefix = kits.TrimEnd('/') + "/";
        foreach (string cmdline in CommandLines())
        {
            for (int at = cmdline.IndexOf(prefix, StringComparison.Ordinal); at >= 0; at = cmdline.IndexOf(prefix, at + 1, StringComparison.Ordinal))
            {
                int start = at + prefix.Length;
                int end = cmdline.IndexOf('/', start);
                if (end > start)
                {
                    ids.Add(cmdline[start..end]);
                }
            }
        }
        return ids;
    }

    /// <summary>
    /// Cached rootfs images that no run is building or copying (each held by its lock while it goes),
    /// no running process names (a pod's read-only lower is attached to its VM by path) and no
    /// paused pod resumes on (<paramref name="paused"/>).
    /// </summary>
    private void RemoveImages(IReadOnlySet<string> paused, List<GcItem> items, List<string> errors)
    {
        List<string>? running = null;
        foreach ((string image, FileStream held) in new RootfsCache(_home.Images).TakeUnused())
        {
            using (held)
            {
                running ??= CommandLines();
                if (paused.Contains(image) || running.Any(c => c.Contains(image, StringComparison.Ordinal)))
                {
                    continue;
                }
                string metadata = RootfsBuilder.MetadataPath(image);
                items.Add(new GcItem("image", image, UnixFile.DiskUsage(image) + UnixFile.DiskUsage(metadata), "a rootfs built from an image, not in use (built again when next needed)"));
                if (_options.DryRun)
                {
                    continue;
                }
                try
                {
                    File.Delete(image);
                    File.Delete(metadata);
                    File.Delete(Path.ChangeExtension(image, ".lock"));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    errors.Add($"cannot remove {image}: {e.Message}");
                }
            }
        }
        if (!_options.DryRun)
        {
            // Keys of the tarballs whose entries went (or were never kept): tiny hints, listed in the dry run only through their entries.
            foreach (string key in new RootfsCache(_home.Images).StaleKeys())
            {
                File.Delete(key);
            }
        }
    }

    /// <summary>Unpacked image trees (virtio-fs pods) that no live sandbox serves, and partial unpacks of dead processes.</summary>
    private async Task RemoveTreesAsync(List<GcItem> items, List<string> errors, CancellationToken cancellationToken)
    {
        foreach ((string tree, FileStream? held) in await PodTree.TakeUnusedAsync(_home, cancellationToken))
        {
            using (held)
            {
                items.Add(new GcItem("tree", tree, UnixFile.DiskUsage(tree), held is null
                    ? "a partial image tree left by a process that is gone"
                    : "an unpacked image tree no sandbox serves (unpacked again when next needed)"));
                if (_options.DryRun)
                {
                    continue;
                }
                try
                {
                    Directory.Delete(tree, recursive: true);
                    if (held is not null)
                    {
                        File.Delete(tree + ".lock");
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    errors.Add($"cannot remove {tree}: {e.Message}");
                }
            }
        }
    }

    private void Remove(List<GcItem> items, List<string> errors, IEnumerable<string> paths, string kind, string reason, Action<string> delete)
    {
        foreach (string path in paths)
        {
            items.Add(new GcItem(kind, path, UnixFile.DiskUsage(path), reason));
            if (_options.DryRun)
            {
                continue;
            }
            try
            {
                delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                errors.Add($"cannot remove {path}: {e.Message}");
            }
        }
    }
}
