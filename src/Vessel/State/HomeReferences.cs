using System.Text.Json;
using Vessel.Common;

namespace Vessel.State;

/// <summary>
/// What in a home is in use, read from the state database and from the directories of live
/// processes (docs/ARCHITECTURE.md, "Ownership and reclaim"): templates and cache entries,
/// the daemon's sandboxes (their layer chains and paused snapshots), and each live sandbox or
/// build's overlay cache (<c>BASE.PID-START.NONCE.cache</c>: the layer under it) and
/// <see cref="RestoredFromFile"/> (the snapshot whose memory it maps). <c>vessel gc</c> keeps
/// all of it; a template build that replaces a snapshot removes the old one only when nothing
/// here names it.
/// </summary>
public sealed class HomeReferences
{
    /// <summary>In a sandbox directory: the snapshot directory the sandbox was resumed from (its memory is mapped from there).</summary>
    public const string RestoredFromFile = "restored-from";

    private HomeReferences(IReadOnlyList<TemplateRecord> templates, IReadOnlyList<CacheEntry> cacheEntries, IReadOnlyList<SandboxRecord> sandboxes,
        IReadOnlySet<Guid> liveOverlayBases, IReadOnlySet<string> liveRestoredFrom)
    {
        Templates = templates;
        CacheEntries = cacheEntries;
        Sandboxes = sandboxes;
        LiveOverlayBases = liveOverlayBases;
        LiveRestoredFrom = liveRestoredFrom;
    }

    public IReadOnlyList<TemplateRecord> Templates { get; }

    public IReadOnlyList<CacheEntry> CacheEntries { get; }

    /// <summary>The daemon's sandboxes, running and paused.</summary>
    public IReadOnlyList<SandboxRecord> Sandboxes { get; }

    /// <summary>Layers under the overlays of live sandboxes and builds (HOME/sandboxes/*/, HOME/work/).</summary>
    public IReadOnlySet<Guid> LiveOverlayBases { get; }

    /// <summary>Names (in HOME/snapshots) of the snapshots live sandboxes were resumed from.</summary>
    public IReadOnlySet<string> LiveRestoredFrom { get; }

    /// <summary>Layers that the state and live processes name directly (not what those layers use in turn).</summary>
    public IEnumerable<Guid> RootLayers =>
        Templates.Select(t => t.LayerBuildId)
            .Concat(Sandboxes.SelectMany(s => JsonSerializer.Deserialize<List<Guid>>(s.LayersJson) ?? []))
            .Concat(LiveOverlayBases);

    /// <summary>Reads the references of <paramref name="home"/>; <paramref name="state"/> is null when the home has no state database.</summary>
    public static async Task<HomeReferences> ReadAsync(VesselHome home, StateStore? state, CancellationToken cancellationToken)
    {
        IReadOnlyList<TemplateRecord> templates = state is null ? [] : await state.ListTemplatesAsync(cancellationToken);
        IReadOnlyList<CacheEntry> entries = state is null ? [] : await state.ListCacheEntriesAsync(cancellationToken);
        IReadOnlyList<SandboxRecord> sandboxes = state is null ? [] : await state.ListSandboxesAsync(cancellationToken);
        var bases = new HashSet<Guid>();
        var restored = new HashSet<string>(StringComparer.Ordinal);
        AddOverlayBases(home.Work, bases);
        if (Directory.Exists(home.Sandboxes))
        {
            foreach (string dir in Directory.EnumerateDirectories(home.Sandboxes))
            {
                if (!IsLiveSandboxDirectory(dir))
                {
                    continue;
                }
                AddOverlayBases(dir, bases);
                if (TryReadText(Path.Combine(dir, RestoredFromFile)) is { Length: > 0 } from)
                {
                    restored.Add(Path.GetFileName(from.Trim().TrimEnd('/')));
                }
            }
        }
        return new HomeReferences(templates, entries, sandboxes, bases, restored);
    }

    /// <summary>
    /// Whether anything names the snapshot directory <paramref name="snapshotDirectory"/> (compared by
    /// its name in HOME/snapshots, so a home reached through another path still matches):
    /// a template, a cache entry other than those in <paramref name="ignoredCacheEntries"/>, a
    /// daemon's sandbox, or a live sandbox resumed from it.
    /// </summary>
    public bool NamesSnapshot(string snapshotDirectory, IReadOnlySet<string>? ignoredCacheEntries = null)
    {
        string name = Path.GetFileName(snapshotDirectory.TrimEnd('/'));
        bool Same(string? dir) => dir is not null && Path.GetFileName(dir.TrimEnd('/')) == name;
        return Templates.Any(t => Same(t.SnapshotDirectory))
            || CacheEntries.Any(e => Same(e.SnapshotDirectory) && ignoredCacheEntries?.Contains(e.Hash) != true)
            || Sandboxes.Any(s => Same(s.SnapshotDirectory))
            || LiveRestoredFrom.Contains(name);
    }

    /// <summary>
    /// A sandbox directory whose owner runs, or one without an owner stamp yet (being created):
    /// either may be using what it names. A dead owner's directory is a leftover the sweep removes.
    /// </summary>
    private static bool IsLiveSandboxDirectory(string dir)
    {
        string? owner = TryReadText(Path.Combine(dir, "owner"))?.Trim();
        return string.IsNullOrEmpty(owner) || ProcessOwner.IsAlive(owner.Replace(' ', '-'));
    }

    /// <summary>The base layers named by overlay caches of live owners in <paramref name="directory"/>.</summary>
    private static void AddOverlayBases(string directory, HashSet<Guid> bases)
    {
        if (!Directory.Exists(directory))
        {
            return;
        }
        foreach (string file in Directory.EnumerateFiles(directory, "*.cache"))
        {
            string[] parts = Path.GetFileName(file).Split('.');
            if (parts.Length == 4 && Guid.TryParseExact(parts[0], "N", out Guid id) && (!ProcessOwner.IsStamp(parts[1]) || ProcessOwner.IsAlive(parts[1])))
            {
                bases.Add(id);
            }
        }
    }

    private static string? TryReadText(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
