using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Vessel.Blocks;
using Vessel.Common;
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
    private readonly TimeProvider _time;

    /// <summary>The suffix of a key: a tarball's identity, named by its hash, holding its content digest.</summary>
    public const string KeyFile = ".key";

    /// <summary>How old a file's change time must be before its identity may stand for its content (timestamps move in coarse steps).</summary>
    private static readonly TimeSpan KeySettleTime = TimeSpan.FromSeconds(2);

    /// <param name="time">The clock a file's change time is compared with before its identity is remembered.</param>
    public RootfsCache(string directory, RootfsBuildOptions? options = null, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory = Path.GetFullPath(directory);
        _options = options ?? new RootfsBuildOptions();
        _time = time ?? TimeProvider.System;
    }

    public string Directory { get; }

    /// <summary>
    /// Resolves the image, and returns its cached rootfs, building it first if there is none. A
    /// source that only a full read can name (<see cref="IFileImageSource"/>: a rootfs tarball)
    /// is found again by its file's identity (<see cref="KeyFile"/>) without reading it.
    /// </summary>
    public async Task<RootfsCacheEntry> EnsureAsync(IImageSource source, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        var clock = Stopwatch.StartNew();
        var file = source as IFileImageSource;
        DateTimeOffset started = _time.GetUtcNow();
        FileIdentity? before = file?.GetIdentity();
        if (before is { } known && await TryKnownAsync(file!, known, clock, cancellationToken) is { } hit)
        {
            return hit;
        }
        RootfsCacheEntry entry = await EnsureResolvedAsync(source, clock, cancellationToken);
        // Remember the file only when it did not change while it was read, and when no later
        // write can keep its identity (a change time older than the clock's coarse steps).
        if (before is { } b && file!.GetIdentity() == b && b.Ctime <= started - KeySettleTime)
        {
            await RememberAsync(b, entry.ContentDigest, cancellationToken);
        }
        return entry;
    }

    private async Task<RootfsCacheEntry> EnsureResolvedAsync(IImageSource source, Stopwatch clock, CancellationToken cancellationToken)
    {
        ResolvedImage image = await source.ResolveAsync(cancellationToken);
        string path = PathOf(image.ContentDigest);
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

    /// <summary>The entry of a file whose identity a key names, when both are still there; null sends the caller the long way.</summary>
    private async Task<RootfsCacheEntry?> TryKnownAsync(IFileImageSource file, FileIdentity identity, Stopwatch clock, CancellationToken cancellationToken)
    {
        string key = KeyPath(identity);
        string? digest;
        try
        {
            digest = File.Exists(key) ? (await File.ReadAllTextAsync(key, cancellationToken)).Trim() : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            digest = null; // being replaced, or removed by a prune
        }
        if (digest is null || !OciDigest.TryParse(digest, out _) || !File.Exists(PathOf(digest)))
        {
            return null;
        }
        ResolvedImage image = await file.ResolveKnownAsync(digest, cancellationToken);
        return new RootfsCacheEntry(PathOf(digest), digest, Built: false, clock.Elapsed) { Config = image.Config };
    }

    private async Task RememberAsync(FileIdentity identity, string contentDigest, CancellationToken cancellationToken)
    {
        string key = KeyPath(identity);
        if (File.Exists(key))
        {
            return;
        }
        try
        {
            await OutputFile.WriteAllBytesAsync(key, Encoding.UTF8.GetBytes(contentDigest + "\n"), "rootfs cache key", cancellationToken);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or VesselException)
        {
            _ = e; // a concurrent run wrote it, or the disk is full: the next start hashes the file again
        }
    }

    private string PathOf(string contentDigest) => Path.Combine(Directory, Name(contentDigest) + ".ext4");

    /// <summary>
    /// <c>KEY.key</c> beside the entries: the content digest (one line) of the file whose identity
    /// hashes to KEY. Keys are hints: one whose file changed is never looked up again (its identity
    /// is gone), one whose entry is gone sends the caller the long way.
    /// </summary>
    internal string KeyPath(FileIdentity identity)
    {
        string text = string.Join(' ', identity.DeviceMajor, identity.DeviceMinor, identity.Inode, identity.Size,
            identity.MtimeSeconds, identity.MtimeNanoseconds, identity.CtimeSeconds, identity.CtimeNanoseconds);
        return Path.Combine(Directory, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..32] + KeyFile);
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

    /// <summary>
    /// For <c>vessel gc</c>: the keys whose content digest no entry here holds any more (each
    /// entry's metadata, <c>NAME.ext4.json</c>, names its digest), so a removed entry's keys go with it.
    /// </summary>
    public IReadOnlyList<string> StaleKeys()
    {
        if (!System.IO.Directory.Exists(Directory))
        {
            return [];
        }
        var held = new HashSet<string>(StringComparer.Ordinal);
        foreach (string image in System.IO.Directory.EnumerateFiles(Directory, "*.ext4"))
        {
            try
            {
                using JsonDocument metadata = JsonDocument.Parse(File.ReadAllBytes(RootfsBuilder.MetadataPath(image)));
                if (metadata.RootElement.TryGetProperty("contentDigest", out JsonElement digest) && digest.ValueKind == JsonValueKind.String)
                {
                    held.Add(digest.GetString()!);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
            {
                // No metadata (being written or removed): its keys lead nowhere anyway.
            }
        }
        var stale = new List<string>();
        foreach (string key in System.IO.Directory.EnumerateFiles(Directory, "*" + KeyFile))
        {
            try
            {
                if (!held.Contains(File.ReadAllText(key).Trim()))
                {
                    stale.Add(key);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _ = e; // removed meanwhile
            }
        }
        return stale;
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
