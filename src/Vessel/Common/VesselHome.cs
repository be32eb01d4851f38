namespace Vessel.Common;

/// <summary>
/// Vessel's one home on this machine and the paths in it, as methods of one type (after
/// e2b-dev/infra's storage paths): kits, the block store, the state database, sandboxes
/// (runs and template build VMs alike, so one sweep covers both), snapshots, work caches,
/// locks and the daemon's socket. Nothing else decides where Vessel keeps things.
/// </summary>
public sealed class VesselHome
{
    /// <summary>The home of a root user when neither --home nor VESSEL_HOME names one.</summary>
    public const string SystemRoot = "/var/lib/vessel";

    public VesselHome(string root)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        Root = Path.GetFullPath(root);
    }

    /// <summary>The home directory itself.</summary>
    public string Root { get; }

    /// <summary>SQLite state: templates, builds, cache entries (and the daemon's tables).</summary>
    public string StateDatabase => Path.Combine(Root, "state.db");

    /// <summary>The layered block store (docs/formats/block-layer.md).</summary>
    public string Blocks => Path.Combine(Root, "blocks");

    /// <summary>Guest kits: downloads/, kernels/, kits/&lt;id&gt;/.</summary>
    public string Kits => Path.Combine(Root, "kits");

    /// <summary>The compiled network filters QEMU loads (Vmm/NetworkFilter.cs), named by source hash.</summary>
    public string NetworkFilters => Path.Combine(Kits, "netfilter");

    /// <summary>One working directory per live sandbox or build VM, swept when its owner is gone.</summary>
    public string Sandboxes => Path.Combine(Root, "sandboxes");

    /// <summary>The working directory of sandbox <paramref name="id"/>.</summary>
    public string Sandbox(string id) => Path.Combine(Sandboxes, id);

    /// <summary>Template and paused-sandbox snapshots (never rewritten once published).</summary>
    public string Snapshots => Path.Combine(Root, "snapshots");

    /// <summary>Per-build work caches of template builds.</summary>
    public string Work => Path.Combine(Root, "work");

    /// <summary>Cross-process phase locks (flock files).</summary>
    public string Locks => Path.Combine(Root, "locks");

    /// <summary>Root filesystems built from images, cached by content digest.</summary>
    public string Images => Path.Combine(Root, "images");

    /// <summary>Unpacked image trees that virtio-fs pods serve read-only, one directory per image content digest.</summary>
    public string ImageTrees => Path.Combine(Images, "trees");

    /// <summary>The unpacked tree of the image whose content digest's hex is <paramref name="digestHex"/>.</summary>
    public string ImageTree(string digestHex) => Path.Combine(ImageTrees, digestHex);

    /// <summary>Verified data chunks fetched from an object store (bounded, least recently used out).</summary>
    public string ChunkCache => Path.Combine(Root, "cache", "chunks");

    /// <summary>The daemon's unix socket.</summary>
    public string Socket => Path.Combine(Root, "vessel.sock");

    /// <summary>True when the home directory exists (read-only commands refuse a missing one).</summary>
    public bool Exists => Directory.Exists(Root);

    /// <summary>The default home: /var/lib/vessel for root, else ~/.local/share/vessel.</summary>
    public static string DefaultRoot(bool isRoot, string userProfile) =>
        isRoot ? SystemRoot : Path.Combine(userProfile, ".local", "share", "vessel");

    public override string ToString() => Root;
}
