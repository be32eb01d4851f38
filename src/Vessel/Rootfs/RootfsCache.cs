using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Vessel.Oci;

namespace Vessel.Rootfs;

/// <summary>A rootfs from the cache: where it is, which image content it holds, and whether this call built it.</summary>
public sealed record RootfsCacheEntry(string Path, string ContentDigest, bool Built, TimeSpan Elapsed)
{
    /// <summary>The image's config (entrypoint, cmd, env, workdir, user).</summary>
    public ImageConfig Config { get; init; } = ImageConfig.Empty;
}

/// <summary>
/// Rootfs images built from container images, kept under one directory (the Vessel home's
/// <c>rootfs/</c>) and named by the image's content digest (docs/formats/image-sources.md:
/// the manifest digest, a docker-archive's config digest, a tarball's sha256) together with
/// the provisioning version and the build options, so the same image is built once. A build
/// holds a lock file for its name, so concurrent runs build it once; the image appears
/// only complete (RootfsBuilder writes a temporary file and renames it). Callers must not
/// write to an entry: sandboxes boot copies of it.
/// </summary>
public sealed class RootfsCache
{
    private static readonly TimeSpan s_lockPoll = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan s_lockWait = TimeSpan.FromMinutes(30); // another run may be pulling and building a large image
    private readonly RootfsBuildOptions _options;

    public RootfsCache(string directory, RootfsBuildOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory = Path.GetFullPath(directory);
        _options = options ?? new RootfsBuildOptions();
    }

    public string Directory { get; }

    /// <summary>Resolves the image, and returns its cached rootfs, building it first if there is none.</summary>
    public async Task<RootfsCacheEntry> EnsureAsync(IImageSource source, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        var clock = Stopwatch.StartNew();
        ResolvedImage image = await source.ResolveAsync(cancellationToken);
        string path = Path.Combine(Directory, Name(image.ContentDigest) + ".ext4");
        if (File.Exists(path))
        {
            return new RootfsCacheEntry(path, image.ContentDigest, Built: false, clock.Elapsed) { Config = image.Config };
        }
        System.IO.Directory.CreateDirectory(Directory);
        await using FileStream held = await LockAsync(Path.ChangeExtension(path, ".lock"), cancellationToken);
        if (File.Exists(path))
        {
            return new RootfsCacheEntry(path, image.ContentDigest, Built: false, clock.Elapsed) { Config = image.Config }; // built by a concurrent run while we waited
        }
        RootfsBuildResult built = await RootfsBuilder.BuildAsync(source, path, _options, null, cancellationToken);
        return new RootfsCacheEntry(path, built.ContentDigest, Built: true, clock.Elapsed) { Config = built.Config };
    }

    /// <summary>
    /// Keeps <paramref name="entry"/> from <c>vessel gc</c> while the caller copies it: a shared lock
    /// on the entry's lock file (the builder's and gc's are exclusive). Null when the entry was
    /// removed before the lock was taken: ensure it again.
    /// </summary>
    public static async Task<IDisposable?> HoldAsync(RootfsCacheEntry entry, CancellationToken cancellationToken)
    {
        string lockPath = Path.ChangeExtension(entry.Path, ".lock");
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                var held = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.Read, FileShare.ReadWrite);
                if (File.Exists(entry.Path))
                {
                    return held;
                }
                await held.DisposeAsync();
                return null;
            }
            catch (IOException) when (waited.Elapsed < s_lockWait)
            {
                await Task.Delay(s_lockPoll, cancellationToken); // a gc is removing it, or a build of it runs
            }
        }
    }

    /// <summary>
    /// For <c>vessel gc</c>: the cache's entries that nobody builds or holds right now, each with
    /// its exclusive lock taken (dispose it after removing the entry's files). Entries in use are skipped.
    /// </summary>
    public IReadOnlyList<(string Path, FileStream Lock)> TakeUnused()
    {
        var taken = new List<(string, FileStream)>();
        if (!System.IO.Directory.Exists(Directory))
        {
            return taken;
        }
        foreach (string image in System.IO.Directory.EnumerateFiles(Directory, "*.ext4"))
        {
            try
            {
                taken.Add((image, new FileStream(Path.ChangeExtension(image, ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)));
            }
            catch (IOException)
            {
                // Being built or copied: in use.
            }
        }
        return taken;
    }

    /// <summary>The entry's name: everything that makes its bytes, hashed.</summary>
    private string Name(string contentDigest)
    {
        string inputs = string.Join('\n', contentDigest, "provisioning " + Provisioning.Version, "size " + _options.SizeBytes,
            "free " + _options.FreeBytes, "reserved " + _options.ReservedBytes, "hostname " + _options.Hostname, "busybox " + _options.BusyboxPath,
            "provision " + _options.Provision);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(inputs)))[..32];
    }

    /// <summary>An exclusive lock held by an open file (.NET takes flock for FileShare.None on Unix), polled until free.</summary>
    internal static async Task<FileStream> LockAsync(string path, CancellationToken cancellationToken)
    {
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException e) when (waited.Elapsed < s_lockWait)
            {
                _ = e; // held by a concurrent build of the same image (or failing for another reason until the deadline says so)
                await Task.Delay(s_lockPoll, cancellationToken);
            }
            catch (IOException e)
            {
                throw new VesselException(VesselErrorReason.Timeout,
                    $"Waited {s_lockWait.TotalMinutes:0} minutes for the rootfs cache lock {path} ({e.Message}); another run may be stuck building the same image.");
            }
        }
    }
}
