using System.Text.Json;

namespace Vessel.IntegrationTests.Hardening;

/// <summary>
/// <c>vessel gc</c> on a home with real templates (host-step builds of the busybox test image),
/// imported layers, a daemon's paused sandbox row, cached image rootfs files and leftovers of a
/// dead process (issue 18, item 3): the dry run lists and removes nothing; gc removes exactly
/// what nothing uses; the kept template still builds fully cached and its layer verifies.
/// </summary>
public sealed class GcTests : IDisposable
{
    // No process has this pid (above pid_max): leftovers stamped with it have a dead owner.
    private const string DeadOwner = "2147483646-1";

    private readonly TempDirectory _dir = TempDirectory.Create("vgc-", "/tmp");

    public void Dispose() => _dir.Dispose();

    private string WriteSpec(string name, string src)
    {
        Directory.CreateDirectory(_dir.Combine(src));
        File.WriteAllText(_dir.Combine(src, "f.txt"), name + "\n");
        return TestImages.WriteTemplateSpec(_dir.Combine(name + ".json"), name, $$""" "steps": [ { "copy": { "src": "{{src}}", "dest": "/{{src}}" } } ] """);
    }

    private static async Task<string> CliAsync(CancellationToken ct, params string[] args)
    {
        ProcessResult r = await VesselCli.RunAsync(ct, args);
        Assert.True(r.ExitCode == 0, $"vessel {string.Join(' ', args)}: exit {r.ExitCode}: {r.StandardError}");
        return r.StandardOutput;
    }

    /// <summary>Every file under the home (but the lock files and SQLite's side files) with its length: what a dry run must not change.</summary>
    private static string Fingerprint(string home) => string.Join('\n', Directory.EnumerateFiles(home, "*", SearchOption.AllDirectories)
        .Where(f => !f.Contains("/locks/", StringComparison.Ordinal) && !f.EndsWith(".lock", StringComparison.Ordinal) && !f.Contains("state.db", StringComparison.Ordinal))
        .Order(StringComparer.Ordinal).Select(f => $"{f} {new FileInfo(f).Length}"));

    private async Task<string> ImportAsync(string name, string home, CancellationToken ct)
    {
        string tar = _dir.Combine(name + ".tar");
        File.WriteAllBytes(tar, LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/" + name, name + "\n")));
        string image = _dir.Combine(name + ".ext4");
        await CliAsync(ct, "rootfs", "build", tar, "-o", image, "--size", "16M");
        return (await CliAsync(ct, "blocks", "import", image, "--store", Path.Combine(home, "blocks"))).Trim();
    }

    [RequiresFact("nbdfuse", "fusermount3", "debugfs", "e2fsck", "busybox-image", "root", Timeout = 600_000)]
    public async Task Gc_dry_run_lists_without_removing_and_gc_removes_only_what_nothing_uses()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        CancellationToken ct = cts.Token;
        string home = _dir.Combine("home");
        string keepSpec = WriteSpec("keep", "app");
        string goneSpec = WriteSpec("gone", "other");
        await CliAsync(ct, "template", "build", "-f", keepSpec, "--home", home, "--no-vm");
        await CliAsync(ct, "template", "build", "-f", goneSpec, "--home", home, "--no-vm");
        StateStore state = await StateStore.OpenAsync(Path.Combine(home, "state.db"), ct);
        Guid keepLayer = (await state.GetTemplateAsync("keep", ct))!.LayerBuildId;
        Guid goneLayer = (await state.GetTemplateAsync("gone", ct))!.LayerBuildId;
        await CliAsync(ct, "template", "rm", "gone", "--home", home);
        int entriesBefore = await state.CountCacheEntriesAsync(ct);

        // A daemon's paused sandbox, as `vessel serve` records it: its layer chain and its snapshot directory.
        string pausedLayer = await ImportAsync("paused", home, ct);
        string pausedSnapshot = Path.Combine(home, "snapshots", "sbx-0123456789ab-1");
        Directory.CreateDirectory(pausedSnapshot);
        File.WriteAllBytes(Path.Combine(pausedSnapshot, "state"), RandomNumberGenerator.GetBytes(64 << 10));
        await state.PutSandboxAsync(new SandboxRecord("sbx-0123456789ab", "keep", "paused", DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddHours(1), 3600, false,
            "{}", "{}", JsonSerializer.Serialize(new[] { Guid.Parse(pausedLayer) }), pausedSnapshot, null), ct);
        // Nothing names these: an imported layer, a snapshot a --no-cache rebuild replaced, leftovers of a dead process.
        string orphanLayer = await ImportAsync("orphan", home, ct);
        string oldSnapshot = Path.Combine(home, "snapshots", "0123456789abcdef-20261206000000-deadbeef");
        Directory.CreateDirectory(oldSnapshot);
        File.WriteAllBytes(Path.Combine(oldSnapshot, "memory"), RandomNumberGenerator.GetBytes(1 << 20));
        string images = Path.Combine(home, "images");
        string partial = Path.Combine(images, $".x.ext4.{DeadOwner}.{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16))}.partial");
        string workCache = Path.Combine(home, "work", $"{keepLayer:N}.{DeadOwner}.{Guid.NewGuid():N}.cache");
        // Cached image rootfs files: one unused, one held by a run that is copying it.
        RootfsCacheEntry unused = await CacheImageAsync(images, "unused", ct);
        RootfsCacheEntry copying = await CacheImageAsync(images, "copying", ct);
        File.WriteAllBytes(partial, new byte[4096]);
        File.WriteAllBytes(workCache, new byte[4096]);
        using IDisposable? hold = await RootfsCache.HoldAsync(copying, ct);
        Assert.NotNull(hold);

        string before = Fingerprint(home);
        string dry = await CliAsync(ct, "gc", "--dry-run", "--home", home);
        Assert.Equal(before, Fingerprint(home));
        Assert.Equal(entriesBefore, await state.CountCacheEntriesAsync(ct));
        string[] doomed = [oldSnapshot, orphanLayer, goneLayer.ToString(), unused.Path, partial, workCache];
        string[] kept = [keepLayer.ToString(), pausedLayer, pausedSnapshot, copying.Path];
        AssertLists(dry, "would remove", doomed, kept);
        Assert.Contains("(dry run: nothing was removed)", dry, StringComparison.Ordinal);

        string done = await CliAsync(ct, "gc", "--home", home);
        AssertLists(done, "removed", doomed, kept);
        Assert.Equal(dry.Split('\n').Length, done.Split('\n').Length);
        Assert.False(Directory.Exists(oldSnapshot));
        Assert.False(File.Exists(unused.Path));
        Assert.False(File.Exists(partial) || File.Exists(workCache));
        Assert.True(Directory.Exists(pausedSnapshot) && File.Exists(copying.Path));
        string list = await CliAsync(ct, "blocks", "list", "--store", Path.Combine(home, "blocks"));
        Assert.DoesNotContain(orphanLayer, list, StringComparison.Ordinal);
        Assert.DoesNotContain(goneLayer.ToString(), list, StringComparison.Ordinal);
        await CliAsync(ct, "blocks", "verify", keepLayer.ToString(), "--store", Path.Combine(home, "blocks"));
        await CliAsync(ct, "blocks", "verify", pausedLayer, "--store", Path.Combine(home, "blocks"));

        // The kept template's chain is whole: fully cached. The removed one's cache entries went with its layers: it builds again.
        ProcessResult again = await VesselCli.RunAsync(ct, "template", "build", "-f", keepSpec, "--home", home, "--no-vm");
        Assert.True(again.ExitCode == 0, again.StandardError);
        Assert.Equal(3, again.StandardError.Split('\n').Count(l => l.EndsWith("CACHED", StringComparison.Ordinal)));
        ProcessResult rebuilt = await VesselCli.RunAsync(ct, "template", "build", "-f", goneSpec, "--home", home, "--no-vm");
        Assert.True(rebuilt.ExitCode == 0, rebuilt.StandardError);
        // Only the base, which the kept template shares, is still cached.
        Assert.Equal(["[1/3] base  CACHED"], rebuilt.StandardError.Split('\n').Where(l => l.EndsWith("CACHED", StringComparison.Ordinal)));

        // Nothing is left to collect but what is still held.
        hold!.Dispose();
        string last = await CliAsync(ct, "gc", "--dry-run", "--home", home);
        Assert.Contains(copying.Path, last, StringComparison.Ordinal);
        Assert.Equal(2, last.Trim().Split('\n').Length);
    }

    [Fact(Timeout = 60_000)]
    public async Task Kits_go_unless_current_named_by_a_kept_snapshot_or_being_written()
    {
        var home = new VesselHome(_dir.Combine("kithome"));
        string kits = Path.Combine(home.Kits, "kits");
        foreach (string id in new[] { "aaaacurrent00000", "bbbbpinned000000", "ccccold000000000", ".dddd.123.tmp" })
        {
            Directory.CreateDirectory(Path.Combine(kits, id));
            File.WriteAllBytes(Path.Combine(kits, id, "vmlinuz"), new byte[8192]);
        }
        // A template's snapshot taken with the pinned kit, and an unnamed one taken with the old kit.
        string pinned = Path.Combine(home.Snapshots, "1111-20261206000000-aaaaaaaa");
        string stale = Path.Combine(home.Snapshots, "2222-20261206000000-bbbbbbbb");
        Directory.CreateDirectory(pinned);
        Directory.CreateDirectory(stale);
        await new Vessel.Sandboxes.SandboxSnapshot(1, 256, 1, "bbbbpinned000000", "t", DateTimeOffset.UtcNow).WriteAsync(pinned, CancellationToken.None);
        await new Vessel.Sandboxes.SandboxSnapshot(1, 256, 1, "ccccold000000000", "t", DateTimeOffset.UtcNow).WriteAsync(stale, CancellationToken.None);
        StateStore state = await StateStore.OpenAsync(home.StateDatabase, CancellationToken.None);
        await state.PutTemplateAsync(new TemplateRecord("t", "{}", "hash", Guid.NewGuid(), 1 << 20, "{}", pinned, DateTimeOffset.UtcNow), CancellationToken.None);

        var options = new Vessel.Storage.GcOptions { KitCache = home.Kits, CurrentKitId = "aaaacurrent00000" };
        Vessel.Storage.GcResult dry = await new Vessel.Storage.GarbageCollector(home, options with { DryRun = true }).RunAsync(null, CancellationToken.None);
        Assert.Equal([stale, Path.Combine(kits, "ccccold000000000")], dry.Items.Select(i => i.Path));
        Assert.True(Directory.Exists(Path.Combine(kits, "ccccold000000000")));
        Vessel.Storage.GcResult done = await new Vessel.Storage.GarbageCollector(home, options).RunAsync(null, CancellationToken.None);
        Assert.Equal(dry.Items, done.Items);
        Assert.Empty(done.Errors);
        Assert.Equal([".dddd.123.tmp", "aaaacurrent00000", "bbbbpinned000000"], Directory.GetDirectories(kits).Select(d => Path.GetFileName(d)).Order(StringComparer.Ordinal));

        // Without the current kit known, no kit is collected.
        Directory.CreateDirectory(Path.Combine(kits, "eeeeother0000000"));
        Vessel.Storage.GcResult unknown = await new Vessel.Storage.GarbageCollector(home, options with { CurrentKitId = null }).RunAsync(null, CancellationToken.None);
        Assert.Empty(unknown.Items);
    }

    private static void AssertLists(string output, string verb, string[] doomed, string[] kept)
    {
        string[] lines = output.Split('\n');
        foreach (string d in doomed)
        {
            Assert.True(lines.Any(l => l.StartsWith(verb, StringComparison.Ordinal) && l.Contains(d, StringComparison.Ordinal)), $"'{verb}' ... {d} missing from:\n{output}");
        }
        foreach (string k in kept)
        {
            Assert.False(output.Contains(k, StringComparison.Ordinal), $"{k} must be kept, but gc listed it:\n{output}");
        }
        Assert.Contains(lines, l => l.StartsWith(verb, StringComparison.Ordinal) && l.Contains("cache ", StringComparison.Ordinal));
        Assert.Matches(verb == "removed" ? "freed .+ in \\d+ items" : "would free .+ in \\d+ items", output);
    }

    private async Task<RootfsCacheEntry> CacheImageAsync(string images, string name, CancellationToken ct)
    {
        string tar = _dir.Combine(name + "-image.tar");
        File.WriteAllBytes(tar, LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/" + name, name + "\n")));
        await using IImageSource source = await ImageSources.OpenAsync(tar, new ImageSourceOptions(), ct);
        return await new RootfsCache(images, new RootfsBuildOptions { SizeBytes = 16L << 20 }).EnsureAsync(source, ct);
    }
}
