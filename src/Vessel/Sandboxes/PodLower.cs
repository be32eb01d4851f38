using Vessel.Guest;
using Vessel.Oci;
using Vessel.Rootfs;
using Vessel.State;
using Vessel.Vmm;

namespace Vessel.Sandboxes;

/// <summary>
/// One image of a pod as a read-only ext4 (the image's files only, no provisioning edits), kept in
/// the home's <c>images/</c> by content digest and shared by every sandbox that uses the image.
/// </summary>
/// <param name="Id">The first 18 hex digits of the image's content digest: the disk's serial (after <see cref="InitScript.LowerSerialPrefix"/>) and the guest's <c>/vessel/lowers/ID</c>.</param>
internal sealed record PodLower(string Id, string Path, string ContentDigest, ImageConfig Config, bool Built)
{
    /// <summary>Serials hold 20 bytes: "i-" and 18 hex digits (72 bits of the digest).</summary>
    public const int IdLength = 18;

    /// <summary>The file in a paused pod's snapshot directory that lists the image disks its resume attaches, one path a line.</summary>
    public const string PausedLowersFile = "lowers";

    /// <summary>Room to spare in a lower: none is needed (nothing writes to it), a little keeps ext4's metadata comfortable.</summary>
    private const long LowerFreeBytes = 8L << 20;

    public DiskConfig Disk => DiskConfig.File(Path, readOnly: true) with { Serial = InitScript.LowerSerialPrefix + Id };

    /// <summary>The cache of lowers under <paramref name="imagesDirectory"/>: built once per digest (a lock per name, a temporary file renamed when complete).</summary>
    public static RootfsCache Cache(string imagesDirectory) => new(imagesDirectory, new RootfsBuildOptions { Provision = false, FreeBytes = LowerFreeBytes });

    /// <summary>The image disks that the paused pods among <paramref name="sandboxes"/> (the state's rows) resume on: each snapshot's <see cref="PausedLowersFile"/>.</summary>
    public static async Task<HashSet<string>> PausedAsync(IEnumerable<SandboxRecord> sandboxes, CancellationToken cancellationToken)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (SandboxRecord s in sandboxes)
        {
            string? list = s.SnapshotDirectory is { } dir ? System.IO.Path.Combine(dir, PausedLowersFile) : null;
            if (list is not null && File.Exists(list))
            {
                used.UnionWith((await File.ReadAllLinesAsync(list, cancellationToken)).Where(l => l.Length > 0));
            }
        }
        return used;
    }

    public static async Task<PodLower> EnsureAsync(RootfsCache cache, IImageSource source, CancellationToken cancellationToken)
    {
        RootfsCacheEntry entry = await cache.EnsureAsync(source, cancellationToken);
        string hex = entry.ContentDigest.StartsWith("sha256:", StringComparison.Ordinal) ? entry.ContentDigest["sha256:".Length..] : entry.ContentDigest;
        if (hex.Length < IdLength || !hex.All(char.IsAsciiHexDigitLower))
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"{source.Description}: content digest '{entry.ContentDigest}' is not a sha256 digest.");
        }
        return new PodLower(hex[..IdLength], entry.Path, entry.ContentDigest, entry.Config, entry.Built);
    }
}
