using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.IntegrationTests.Blocks;
using Vessel.IntegrationTests.Service;
using Vessel.IntegrationTests.State;
using Vessel.Testing;
using Xunit;

namespace Vessel.IntegrationTests.Cluster;

/// <summary>
/// Three real <c>vessel serve --cluster</c> daemons (nodes a, b and c: separate homes, ports on
/// loopback) on a real PostgreSQL and a real S3-compatible bucket (s3rver) that every node's
/// store reads through to (<c>VESSEL_REMOTE_STORE</c>). Only node a builds template "t", so
/// creates land there; b and c have nothing of it but what the bucket gives them.
/// </summary>
public sealed class ThreeNodeFixture() : ClusterFixtureBase(3, "npm", "node")
{
    public const string Prefix = "cluster";

    public S3Server? Bucket { get; private set; }

    public DaemonFixture? A => Node(0);

    public DaemonFixture? B => Node(1);

    public DaemonFixture? C => Node(2);

    /// <summary>The bucket as a store (to look at and damage its objects).</summary>
    internal S3LayerStorage Store(string cache) => new(Bucket!.Options(Prefix, cache));

    private protected override async Task StartSharedAsync() => Bucket = await S3Server.StartAsync(CancellationToken.None);

    private protected override void AddSharedEnvironment(Dictionary<string, string> environment)
    {
        environment["VESSEL_REMOTE_STORE"] = $"s3://{Bucket!.Bucket}/{Prefix}";
        foreach ((string key, string value) in Bucket.Environment)
        {
            environment[key] = value;
        }
    }

    private protected override async Task StopSharedAsync()
    {
        if (Bucket is not null)
        {
            await Bucket.DisposeAsync();
        }
    }

    private protected override void AssertSharedStopped() => Assert.False(Bucket?.IsRunning ?? false, "s3rver outlived the fixture");
}

public sealed class ClusterResumeTests(ThreeNodeFixture fixture, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<ThreeNodeFixture>
{
    [RequiresFact("qemu-system-x86_64", "umoci", "busybox", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "kill", "npm", "node", "/usr/lib/postgresql/15/bin/initdb")]
    public async Task A_sandbox_paused_on_one_node_resumes_on_another_with_its_files_and_processes_even_after_its_node_died()
    {
        DaemonFixture a = fixture.A!, b = fixture.B!, c = fixture.C!;
        using HttpClient viaA = a.Tcp(a.ApiKey), viaB = b.Tcp(b.ApiKey), viaC = c.Tcp(c.ApiKey);

        // Created through b, placed on a (the only node holding the template); commands stream through b.
        using HttpResponseMessage created = await viaB.PostAsJsonAsync("/sandboxes", new { template = "t" });
        string id = (await DaemonFixture.JsonAsync(created, HttpStatusCode.Created))["sandboxId"]!.GetValue<string>();
        Assert.Equal("node-a", created.Headers.GetValues("X-Vessel-Node").Single());
        Assert.Equal("hello\n", await RunAsync(viaB, id, "echo hello"));
        await RunAsync(viaB, id, "echo kept > /root/file; sync");
        using (HttpResponseMessage bg = await viaB.PostAsJsonAsync($"/sandboxes/{id}/commands", DaemonFixture.Sh("echo $$ > /root/pid; exec sleep 100000", background: true)))
        {
            Assert.Equal(HttpStatusCode.OK, bg.StatusCode);
        }
        await WaitForAsync(async () => (await RunAsync(viaB, id, "cat /root/pid 2>/dev/null || true")).Length > 0, "the background process wrote its pid");

        // Paused through b: the snapshot goes to the bucket, and every node lists it as a's.
        await DaemonFixture.JsonAsync(await viaB.PostAsync($"/sandboxes/{id}/pause", null), HttpStatusCode.OK);
        JsonNode listed = (await DaemonFixture.JsonAsync(await viaC.GetAsync("/sandboxes"), HttpStatusCode.OK)).AsArray().Single(s => s!["sandboxId"]!.GetValue<string>() == id)!;
        Assert.Equal("paused", listed["state"]!.GetValue<string>());
        Assert.Equal("node-a", listed["node"]!.GetValue<string>());

        await ADamagedSnapshotFailsTheResumeNamingItAndTheSandboxStaysPausedAsync(viaC, id);

        // A second sandbox runs on a when a is killed: it is lost; the paused one stays paused.
        using HttpResponseMessage second = await viaB.PostAsJsonAsync("/sandboxes", new { template = "t" });
        string running = (await DaemonFixture.JsonAsync(second, HttpStatusCode.Created))["sandboxId"]!.GetValue<string>();
        Assert.Equal("node-a", second.Headers.GetValues("X-Vessel-Node").Single()); // the template's layers in the bucket do not count as held
        await a.StopAsync(kill9: true);
        foreach (HttpClient survivor in new[] { viaB, viaC })
        {
            string detail = await ClusterTests.WaitUntilLostAsync(survivor, running);
            Assert.Contains("declared dead", detail, StringComparison.Ordinal);
            JsonNode paused = await DaemonFixture.JsonAsync(await survivor.GetAsync($"/sandboxes/{id}"), HttpStatusCode.OK);
            Assert.Equal("paused", paused["state"]!.GetValue<string>());
        }
        string list = await viaB.GetStringAsync("/sandboxes");
        Assert.Contains(id, list, StringComparison.Ordinal);
        Assert.DoesNotContain(running, list, StringComparison.Ordinal);

        // Resumed through c (placement: a is gone, c got the request) while b is asked to resume it too: one wins, the other gets 409.
        DaemonFixture winner = await ExactlyOneResumeWinsAsync(b, c, viaB, viaC, id);
        DaemonFixture loser = winner == b ? c : b;
        HttpClient viaLoser = winner == b ? viaC : viaB;
        Assert.NotEmpty(winner.Qemus());
        Assert.Empty(loser.Qemus());
        Assert.Empty(Directory.GetDirectories(Path.Combine(loser.Home, "snapshots"), id + "*"));
        Assert.Equal("kept\n", await RunAsync(viaLoser, id, "cat /root/file"));
        Assert.Equal("alive\n", await RunAsync(viaLoser, id, "kill -0 $(cat /root/pid) && echo alive"));

        // Node a comes back: its copy of the snapshot is gone, and it forwards to the new owner.
        await a.StartAsync(CancellationToken.None);
        Assert.Empty(Directory.GetDirectories(Path.Combine(a.Home, "snapshots"), id + "*"));
        JsonNode seen = await DaemonFixture.JsonAsync(await viaA.GetAsync($"/sandboxes/{id}"), HttpStatusCode.OK);
        Assert.Equal("running", seen["state"]!.GetValue<string>());

        await TheOwnerReleasesItsCopyWhenAnotherLiveNodeResumesItAsync(winner, a, viaA, id);

        // Deleted through the old owner: the bucket keeps nothing of its pauses.
        using (HttpResponseMessage deleted = await viaB.DeleteAsync($"/sandboxes/{id}"))
        {
            Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        }
        using var cache = TempDirectory.Create("vessel-cache-");
        using S3LayerStorage store = fixture.Store(cache.Path);
        Assert.Empty(await store.ListKeysAsync($"sandboxes/{id}/", CancellationToken.None));
    }

    /// <summary>One snapshot file's chunk in the bucket is overwritten: a resume on c fails naming the object, the row still says paused on a; then the chunk is put back.</summary>
    private async Task ADamagedSnapshotFailsTheResumeNamingItAndTheSandboxStaysPausedAsync(HttpClient viaC, string id)
    {
        using var cache = TempDirectory.Create("vessel-cache-");
        using S3LayerStorage store = fixture.Store(cache.Path);
        string chunk = (await store.ListKeysAsync($"sandboxes/{id}/", CancellationToken.None)).First(k => k.Contains("/data/", StringComparison.Ordinal));
        byte[] original = (await store.TryGetAsync(store.KeyOf(chunk), CancellationToken.None))!;
        byte[] damaged = (byte[])original.Clone();
        damaged[damaged.Length / 2] ^= 0xff;
        await store.PutAsync(store.KeyOf(chunk), damaged, CancellationToken.None);
        try
        {
            using HttpResponseMessage failed = await viaC.PostAsJsonAsync($"/sandboxes/{id}/resume", new { node = "node-c" });
            string body = await failed.Content.ReadAsStringAsync();
            Assert.False(failed.IsSuccessStatusCode, "a resume from a damaged bucket succeeded: " + body);
            Assert.Contains(chunk, body, StringComparison.Ordinal);
            output.WriteLine($"damaged chunk: {(int)failed.StatusCode} {body}");
        }
        finally
        {
            await store.PutAsync(store.KeyOf(chunk), original, CancellationToken.None);
        }
        JsonNode still = await DaemonFixture.JsonAsync(await viaC.GetAsync($"/sandboxes/{id}"), HttpStatusCode.OK);
        Assert.Equal("paused", still["state"]!.GetValue<string>());
        Assert.Empty(fixture.C!.Qemus());
        Assert.Empty(Directory.GetDirectories(Path.Combine(fixture.C!.Home, "snapshots"), id + "*"));
    }

    /// <summary>Resumes through b (asking for b) and through c (placement) at once; returns the node that won.</summary>
    private async Task<DaemonFixture> ExactlyOneResumeWinsAsync(DaemonFixture b, DaemonFixture c, HttpClient viaB, HttpClient viaC, string id)
    {
        var clock = Stopwatch.StartNew();
        HttpResponseMessage[] answers = await Task.WhenAll(
            viaC.PostAsync($"/sandboxes/{id}/resume", null),
            viaB.PostAsJsonAsync($"/sandboxes/{id}/resume", new { node = "node-b" }));
        try
        {
            string[] bodies = await Task.WhenAll(answers.Select(r => r.Content.ReadAsStringAsync()));
            output.WriteLine($"two resumes at once took {clock.Elapsed.TotalSeconds:F1} s: c {(int)answers[0].StatusCode} {bodies[0]} / b {(int)answers[1].StatusCode} {bodies[1]}");
            Assert.Single(answers, r => r.StatusCode == HttpStatusCode.OK);
            Assert.Single(answers, r => r.StatusCode == HttpStatusCode.Conflict);
            // c's request goes to c or b (placement: equal but for memory), b's to b: the answer names the node that resumed it.
            string node = answers.Single(r => r.StatusCode == HttpStatusCode.OK).Headers.GetValues("X-Vessel-Node").Single();
            Assert.Contains(node, new[] { "node-b", "node-c" });
            return node == "node-c" ? c : b;
        }
        finally
        {
            foreach (HttpResponseMessage r in answers)
            {
                r.Dispose();
            }
        }
    }

    /// <summary>Paused on its owner and resumed on a live a (asked for by name): the owner's snapshot and layers in its home go within a few heartbeats.</summary>
    private async Task TheOwnerReleasesItsCopyWhenAnotherLiveNodeResumesItAsync(DaemonFixture owner, DaemonFixture a, HttpClient viaA, string id)
    {
        await DaemonFixture.JsonAsync(await viaA.PostAsync($"/sandboxes/{id}/pause", null), HttpStatusCode.OK);
        Assert.NotEmpty(Directory.GetDirectories(Path.Combine(owner.Home, "snapshots"), id + "*"));
        string[] ownerBuilds = Directory.GetDirectories(Path.Combine(owner.Home, "blocks", "builds"));
        Assert.NotEmpty(ownerBuilds); // the pause's layer, written here first
        using HttpResponseMessage resumed = await viaA.PostAsJsonAsync($"/sandboxes/{id}/resume", new { node = "node-a" });
        await DaemonFixture.JsonAsync(resumed, HttpStatusCode.OK);
        Assert.Equal("node-a", resumed.Headers.GetValues("X-Vessel-Node").Single());
        await WaitForAsync(() => Task.FromResult(Directory.GetDirectories(Path.Combine(owner.Home, "snapshots"), id + "*").Length == 0
            && !ownerBuilds.Any(Directory.Exists)), "the old owner released its snapshot and layers");
        Assert.Empty(owner.Qemus());
        Assert.Equal("kept\n", await RunAsync(viaA, id, "cat /root/file"));
        Assert.Equal("alive\n", await RunAsync(viaA, id, "kill -0 $(cat /root/pid) && echo alive"));
    }

    private static async Task<string> RunAsync(HttpClient client, string id, string script)
    {
        using HttpResponseMessage r = await client.PostAsJsonAsync($"/sandboxes/{id}/commands", DaemonFixture.Sh(script));
        string body = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, $"'{script}': {(int)r.StatusCode} {body}");
        (string stdout, string stderr, JsonNode exit, _) = DaemonFixture.ParseCommand(body);
        Assert.True(exit["exitCode"]?.GetValue<int>() == 0, $"'{script}' failed: {stderr} {exit.ToJsonString()}");
        return stdout;
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(1), "timed out waiting until " + what);
            await Task.Delay(250);
        }
    }
}
