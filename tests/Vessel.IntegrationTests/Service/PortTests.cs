namespace Vessel.IntegrationTests.Service;

/// <summary>
/// Ports and network rules through the real daemon: a guest server reached from the host through
/// POST /sandboxes/{id}/ports/{port} (HTTP and raw TCP), still after pause/resume; a guest that
/// cannot reach the daemon's TCP API or another sandbox's forwarded port; create requests with
/// bad network rules refused by name.
/// </summary>
[Collection(DaemonCollection.Name)]
public sealed class PortTests(DaemonFixture daemon)
{
    private async Task<string> ShAsync(string id, string script)
    {
        CommandRun run = await daemon.ExecAsync(id, DaemonFixture.Sh(script));
        return run.Stdout + run.Stderr + "exit=" + run.Exit["exitCode"];
    }

    private async Task<string> ForwardAsync(string id, int port)
    {
        JsonNode got = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/ports/{port}", null), HttpStatusCode.OK);
        Assert.Equal(port, got["port"]!.GetValue<int>());
        string host = got["host"]!.GetValue<string>();
        Assert.Equal("http://" + host, got["url"]!.GetValue<string>());
        return host;
    }

    private static async Task<string> EchoAsync(string host, string text)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPEndPoint.Parse(host)).WaitAsync(TimeSpan.FromSeconds(30));
        NetworkStream stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(text));
        byte[] buffer = new byte[text.Length];
        int read = 0;
        while (read < buffer.Length)
        {
            int n = await stream.ReadAsync(buffer.AsMemory(read)).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(n > 0, $"the echo server closed after {read} bytes");
            read += n;
        }
        return Encoding.ASCII.GetString(buffer);
    }

    [DaemonFact("clang", Timeout = 600_000)]
    public async Task A_guest_port_answers_http_and_raw_tcp_through_the_daemon_and_again_after_pause_and_resume()
    {
        string id = await daemon.CreateSandboxAsync(new { template = "t", timeoutSeconds = 600 });
        string neighbour = await daemon.CreateSandboxAsync(new { template = "t", timeoutSeconds = 600, network = new { outbound = "on" } });
        try
        {
            Assert.Contains("exit=0", await ShAsync(id, "mkdir -p /tmp/www && echo in-guest > /tmp/www/f && busybox httpd -p 8080 -h /tmp/www && (busybox nc -ll -p 7 -e /bin/cat </dev/null >/dev/null 2>&1 &)"), StringComparison.Ordinal);
            string web = await ForwardAsync(id, 8080);
            Assert.Equal(web, await ForwardAsync(id, 8080)); // the same port, the same address
            string echo = await ForwardAsync(id, 7);
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            Assert.Equal("in-guest\n", await http.GetStringAsync($"http://{web}/f"));
            Assert.Equal("raw-tcp\n", await EchoAsync(echo, "raw-tcp\n"));
            // The SDK and the CLI answer the same address for the same port.
            await using (var client = new Vessel.Client.VesselClient(new Vessel.Client.VesselClientOptions { SocketPath = daemon.Socket }))
            {
                Vessel.Client.Sandbox handle = await client.Sandboxes.GetAsync(id);
                Assert.Equal(web, await handle.GetHostAsync(8080));
            }
            Vessel.Common.ProcessResult cli = await VesselCli.RunAsync(CancellationToken.None, "sandbox", "port", id, "8080", "--home", daemon.Home);
            Assert.True(cli.ExitCode == 0, cli.StandardError);
            Assert.Equal(web, cli.StandardOutput.Trim());

            // From inside: neither the daemon's API on the host's loopback nor the other sandbox's forward.
            foreach (string url in new[] { $"http://10.0.2.2:{daemon.Port}/sandboxes", $"http://10.0.2.2:{IPEndPoint.Parse(web).Port}/f", $"http://host.vessel.internal:{IPEndPoint.Parse(web).Port}/f" })
            {
                string output = await ShAsync(neighbour, $"busybox timeout 10 busybox wget -q -O - {url}; echo rc=$?");
                Assert.DoesNotContain("rc=0", output, StringComparison.Ordinal);
                Assert.DoesNotContain("in-guest", output, StringComparison.Ordinal);
            }

            await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/pause", null), HttpStatusCode.OK);
            Assert.Equal(HttpStatusCode.Conflict, (await daemon.Unix.PostAsync($"/sandboxes/{id}/ports/9000", null)).StatusCode);
            await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/resume", null), HttpStatusCode.OK);
            JsonNode ports = await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}/ports"), HttpStatusCode.OK);
            string webAfter = ports.AsArray().Single(p => p!["port"]!.GetValue<int>() == 8080)!["host"]!.GetValue<string>();
            Assert.Equal("in-guest\n", await http.GetStringAsync($"http://{webAfter}/f"));
            Assert.Equal("again\n", await EchoAsync(ports.AsArray().Single(p => p!["port"]!.GetValue<int>() == 7)!["host"]!.GetValue<string>(), "again\n"));
            Assert.Equal(web, webAfter); // its old host port was free
        }
        finally
        {
            await daemon.Unix.DeleteAsync($"/sandboxes/{id}");
            await daemon.Unix.DeleteAsync($"/sandboxes/{neighbour}");
        }
    }

    [DaemonFact]
    public async Task Create_requests_with_bad_network_rules_are_refused_naming_the_rule()
    {
        foreach ((object network, string named) in new (object, string)[]
        {
            (new { outbound = "sideways" }, "sideways"),
            (new { outbound = "off", allow = new[] { "10.0.0.0/8" } }, "10.0.0.0/8"),
            (new { deny = new[] { "10.0.0.0/40" } }, "10.0.0.0/40"),
        })
        {
            using HttpResponseMessage response = await daemon.Unix.PostAsJsonAsync("/sandboxes", new { template = "t", network });
            string body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {body}");
            Assert.Contains(named, body, StringComparison.Ordinal);
        }
        Assert.Empty(await daemon.Unix.GetFromJsonAsync<JsonArray>("/sandboxes") ?? []);
    }
}
