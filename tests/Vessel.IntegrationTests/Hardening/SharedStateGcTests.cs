using System.Text.Json;
using System.Text.RegularExpressions;
using Vessel.IntegrationTests.State;

namespace Vessel.IntegrationTests.Hardening;

/// <summary>
/// <c>vessel images prune</c> and <c>vessel gc</c> on a home whose state is a real PostgreSQL
/// shared with another node (<c>VESSEL_STATE</c>, <c>VESSEL_NODE</c>; docs/cluster.md): this
/// node's paused pods pin its image caches, another node's do not; a layer any node's row names
/// stays, and no shared row is removed.
/// </summary>
public sealed class SharedStateGcTests : TimedTestBase
{
    private const string Node = "node-a";
    private const string OtherNode = "node-b";

    private readonly TempDirectory _dir = TempDirectory.Create("vsgc-", "/tmp");
    private readonly VesselHome _home;

    public SharedStateGcTests()
        : base(240_000)
    {
        _home = new VesselHome(_dir.Combine("home"));
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _dir.Dispose();
        }
        base.Dispose(disposing);
    }

    private static async Task<string> CliAsync(string url, CancellationToken ct, params string[] args)
    {
        ProcessResult r = await VesselCli.RunAsync(new Dictionary<string, string> { ["VESSEL_STATE"] = url, ["VESSEL_NODE"] = Node }, ct, args);
        Assert.True(r.ExitCode == 0, $"vessel {string.Join(' ', args)}: exit {r.ExitCode}: {r.StandardError}");
        return r.StandardOutput;
    }

    /// <summary>A pod lower of a one-file image in the home's cache.</summary>
    private static async Task<string> LowerAsync(VesselHome home, string name, CancellationToken ct)
    {
        await using var source = new LayersImageSource(name, LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/" + name, name + "\n")));
        return (await PodLower.EnsureAsync(PodLower.Cache(home.Images), source, ct)).Path;
    }

    /// <summary>A paused pod's row on <paramref name="node"/> whose snapshot lists <paramref name="lower"/>, and optionally names <paramref name="layer"/>.</summary>
    private async Task<SandboxRecord> PausedPodAsync(StateStore state, string id, string node, string lower, Guid? layer, CancellationToken ct)
    {
        string snapshot = _dir.Combine("snapshots", id);
        Directory.CreateDirectory(snapshot);
        await File.WriteAllTextAsync(Path.Combine(snapshot, PodLower.PausedLowersFile), lower + "\n", ct);
        var row = new SandboxRecord(id, "pod", "paused", DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddHours(1), 3600, false, "{}", "{}",
            JsonSerializer.Serialize(layer is { } l ? new[] { l } : []), snapshot, null, node);
        await state.PutSandboxAsync(row, ct);
        return row;
    }

    private async Task<string> ImportAsync(string url, string name, VesselHome home, CancellationToken ct)
    {
        string tar = _dir.Combine(name + ".tar");
        await File.WriteAllBytesAsync(tar, LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/" + name, name + "\n")), ct);
        string image = _dir.Combine(name + ".ext4");
        await CliAsync(url, ct, "rootfs", "build", tar, "-o", image, "--size", "16M");
        return (await CliAsync(url, ct, "blocks", "import", image, "--store", home.Blocks)).Trim();
    }

    [RequiresFact("root", "tune2fs", "/usr/lib/postgresql/15/bin/initdb", Timeout = 300_000)]
    public async Task Images_prune_keeps_the_lowers_of_this_nodes_paused_pods_and_drops_those_only_another_node_pins()
    {
        await using PostgresServer server = await PostgresServer.StartAsync(Deadline);
        string url = await server.CreateDatabaseAsync(Deadline);
        string mine = await LowerAsync(_home, "mine", Deadline);
        string legacy = await LowerAsync(_home, "legacy", Deadline);
        string others = await LowerAsync(_home, "others", Deadline);
        string unused = await LowerAsync(_home, "unused", Deadline);
        StateStore state = await StateStore.OpenAsync(url, Deadline);
        await PausedPodAsync(state, "sb-mine", Node, mine, null, Deadline);
        await PausedPodAsync(state, "sb-legacy", string.Empty, legacy, null, Deadline); // a row of an earlier Vessel: no node, this one's
        await PausedPodAsync(state, "sb-others", OtherNode, others, null, Deadline); // its lowers are in node-b's home (here at the same path)
        // The home has no SQLite state: before, prune saw no row at all and removed every lower.
        Assert.False(File.Exists(_home.StateDatabase));

        string dry = await CliAsync(url, Deadline, "images", "prune", "--dry-run", "--home", _home.Root);
        string done = await CliAsync(url, Deadline, "images", "prune", "--home", _home.Root);
        foreach (string output in new[] { dry, done })
        {
            Assert.Contains(others, output, StringComparison.Ordinal);
            Assert.Contains(unused, output, StringComparison.Ordinal);
            Assert.DoesNotContain(mine, output, StringComparison.Ordinal);
            Assert.DoesNotContain(legacy, output, StringComparison.Ordinal);
        }
        Assert.True(File.Exists(mine) && File.Exists(legacy));
        Assert.False(File.Exists(others) || File.Exists(unused));
        Assert.Equal(3, (await state.ListSandboxesAsync(Deadline)).Count);
        Assert.False(File.Exists(_home.StateDatabase));
    }

    [RequiresFact("root", "e2fsck", "tune2fs", "/usr/lib/postgresql/15/bin/initdb", Timeout = 300_000)]
    public async Task Gc_keeps_every_layer_a_row_of_any_node_names_removes_the_rest_and_no_shared_row()
    {
        await using PostgresServer server = await PostgresServer.StartAsync(Deadline);
        string url = await server.CreateDatabaseAsync(Deadline);
        Directory.CreateDirectory(_home.Root);
        string othersPaused = await ImportAsync(url, "others-paused", _home, Deadline);
        string cached = await ImportAsync(url, "cached", _home, Deadline);
        string orphan = await ImportAsync(url, "orphan", _home, Deadline);
        StateStore state = await StateStore.OpenAsync(url, Deadline);
        // Another node's paused sandbox names a layer that is here too; a cache entry (every node's) names another; a third
        // entry names a layer only node-b holds. Nothing names the orphan.
        await PausedPodAsync(state, "sb-others", OtherNode, "/nowhere.ext4", Guid.Parse(othersPaused), Deadline);
        await state.PutCacheEntryAsync(new CacheEntry(new string('a', 64), "base", Guid.Parse(cached), "{}", null, DateTimeOffset.UtcNow), Deadline);
        await state.PutCacheEntryAsync(new CacheEntry(new string('b', 64), "base", Guid.NewGuid(), "{}", null, DateTimeOffset.UtcNow), Deadline);

        string dry = await CliAsync(url, Deadline, "gc", "--dry-run", "--home", _home.Root);
        string done = await CliAsync(url, Deadline, "gc", "--home", _home.Root);
        foreach (string output in new[] { dry, done })
        {
            Assert.Contains(orphan, output, StringComparison.Ordinal);
            Assert.DoesNotContain(othersPaused, output, StringComparison.Ordinal);
            Assert.DoesNotContain(cached, output, StringComparison.Ordinal);
            Assert.DoesNotMatch(new Regex(@"^(would remove|removed)\s+cache\s", RegexOptions.Multiline), output);
        }
        string list = await CliAsync(url, Deadline, "blocks", "list", "--store", _home.Blocks);
        Assert.DoesNotContain(orphan, list, StringComparison.Ordinal);
        Assert.Contains(othersPaused, list, StringComparison.Ordinal);
        Assert.Contains(cached, list, StringComparison.Ordinal);
        Assert.Equal(2, await state.CountCacheEntriesAsync(Deadline));
        Assert.Single(await state.ListSandboxesAsync(Deadline));
    }
}
