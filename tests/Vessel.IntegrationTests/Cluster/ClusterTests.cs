using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Vessel.IntegrationTests.Service;
using Vessel.IntegrationTests.State;
using Vessel.Testing;
using Xunit;

namespace Vessel.IntegrationTests.Cluster;

/// <summary>
/// Two nodes (<see cref="ClusterFixtureBase"/>): only node a's home holds template "t" (b's
/// fixture builds nothing), so placement puts a sandbox created through b on a.
/// </summary>
public sealed class ClusterFixture() : ClusterFixtureBase(2)
{
    public DaemonFixture? A => Node(0);

    public DaemonFixture? B => Node(1);
}

public sealed class ClusterTests(ClusterFixture fixture, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<ClusterFixture>
{
    private static object Sh(string script) => new { cmd = "/bin/sh", args = new[] { "-c", script } };

    [RequiresFact("qemu-system-x86_64", "umoci", "busybox", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "kill", "/usr/lib/postgresql/15/bin/initdb")]
    public async Task A_sandbox_created_through_another_node_runs_where_its_layer_is_streams_commands_and_files_through_it_and_is_lost_when_its_node_dies()
    {
        DaemonFixture a = fixture.A!;
        DaemonFixture b = fixture.B!;
        using HttpClient viaB = b.Tcp(b.ApiKey);

        using HttpResponseMessage created = await viaB.PostAsJsonAsync("/sandboxes", new { template = "t" });
        string id = (await DaemonFixture.JsonAsync(created, HttpStatusCode.Created))["sandboxId"]!.GetValue<string>();
        Assert.Equal("node-a", created.Headers.GetValues("X-Vessel-Node").Single());
        Assert.Contains(id, await a.Unix.GetStringAsync("/sandboxes"), StringComparison.Ordinal);
        // Every node lists every node's sandboxes, each with its node.
        JsonNode listedByB = JsonNode.Parse(await b.Unix.GetStringAsync("/sandboxes"))!.AsArray().Single(s => s!["sandboxId"]!.GetValue<string>() == id)!;
        Assert.Equal("node-a", listedByB["node"]!.GetValue<string>());
        Assert.Equal("running", listedByB["state"]!.GetValue<string>());
        Assert.NotEmpty(a.Qemus());
        Assert.Empty(b.Qemus());

        await CommandStreamsThroughTheOtherNodeAsync(b, viaB, id);
        await FilesTravelThroughTheOtherNodeAsync(b, viaB, id);

        await a.StopAsync(kill9: true);
        var clock = Stopwatch.StartNew();
        string detail = await WaitUntilLostAsync(viaB, id);
        Assert.Contains("node-a", detail, StringComparison.Ordinal);
        Assert.Contains("declared dead", detail, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"node a's loss took {clock.Elapsed}");
        output.WriteLine($"node b reported the sandbox lost {clock.Elapsed.TotalSeconds:F1} s after node a was killed (probe timeout {ClusterFixtureBase.ProbeMilliseconds} ms): {detail}");

        // Node a comes back under its name: it sweeps the VM its crash left, and its sandbox stays lost.
        await a.StartAsync(CancellationToken.None);
        Assert.Empty(a.Qemus());
        JsonNode gone = await DaemonFixture.JsonAsync(await a.Unix.GetAsync($"/sandboxes/{id}"), HttpStatusCode.NotFound);
        Assert.Contains("declared dead", gone["detail"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    /// <summary>A command through node b: its first line arrives while it still runs (streamed, not buffered), then it ends when told.</summary>
    private static async Task CommandStreamsThroughTheOtherNodeAsync(DaemonFixture b, HttpClient viaB, string id)
    {
        using var start = new HttpRequestMessage(HttpMethod.Post, $"/sandboxes/{id}/commands")
        {
            Content = JsonContent.Create(Sh("echo first; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo second")),
        };
        // Over b's unix socket (no key): b forwards it with its own node key.
        using HttpResponseMessage streaming = await b.Unix.SendAsync(start, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, streaming.StatusCode);
        Assert.Equal("node-a", streaming.Headers.GetValues("X-Vessel-Node").Single());
        using var lines = new StreamReader(await streaming.Content.ReadAsStreamAsync());
        var seen = new StringBuilder();
        while (!DaemonFixture.ParseCommand(seen.ToString()).Stdout.Contains("first", StringComparison.Ordinal))
        {
            string line = await lines.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(1)) ?? throw new InvalidDataException("the stream ended before 'first': " + seen);
            seen.AppendLine(line);
        }
        (string _, string _, JsonNode exit, int _) = DaemonFixture.ParseCommand(seen.ToString());
        Assert.Null(exit["type"]); // still running: the line came through b before the command ended

        using HttpResponseMessage go = await viaB.PostAsJsonAsync($"/sandboxes/{id}/commands", Sh("touch /tmp/go"));
        Assert.Equal(0, DaemonFixture.ParseCommand(await go.Content.ReadAsStringAsync()).Exit["exitCode"]?.GetValue<int>());
        seen.Append(await lines.ReadToEndAsync());
        (string stdout, _, JsonNode done, _) = DaemonFixture.ParseCommand(seen.ToString());
        Assert.Equal("first\nsecond\n", stdout);
        Assert.Equal(0, done["exitCode"]?.GetValue<int>());
    }

    /// <summary>A 3 MiB upload and its download through node b come back byte for byte.</summary>
    private static async Task FilesTravelThroughTheOtherNodeAsync(DaemonFixture b, HttpClient viaB, string id)
    {
        byte[] data = RandomNumberGenerator.GetBytes(3 << 20);
        using (var upload = new StreamContent(new MemoryStream(data)))
        {
            using HttpResponseMessage put = await viaB.PutAsync($"/sandboxes/{id}/files?path=/root/blob", upload);
            Assert.True(put.IsSuccessStatusCode, $"upload through b: {(int)put.StatusCode} {await put.Content.ReadAsStringAsync()}");
        }
        using HttpResponseMessage get = await b.Unix.GetAsync($"/sandboxes/{id}/files?path=/root/blob", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(await get.Content.ReadAsByteArrayAsync()));
    }

    /// <summary>Polls a surviving node until it says the sandbox is gone; before that it may say the owner does not answer (503), never that it runs.</summary>
    internal static async Task<string> WaitUntilLostAsync(HttpClient survivor, string id)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            using HttpResponseMessage r = await survivor.GetAsync($"/sandboxes/{id}");
            string body = await r.Content.ReadAsStringAsync();
            if (r.StatusCode == HttpStatusCode.NotFound)
            {
                return JsonNode.Parse(body)!["detail"]!.GetValue<string>();
            }
            Assert.True(r.StatusCode == HttpStatusCode.ServiceUnavailable, $"while node a is dead, {survivor.BaseAddress} answered {(int)r.StatusCode}: {body}");
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), "the sandbox was never declared lost: " + body);
            await Task.Delay(250);
        }
    }
}
