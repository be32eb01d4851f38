namespace Vessel.IntegrationTests.Service;

/// <summary>
/// `vessel serve` as a user runs it: the built CLI's daemon over its unix socket and TCP, real
/// VMs from a real template. One daemon for the class (VMs are slow under TCG); each test cleans
/// up its sandboxes and the fixture checks that nothing is left.
/// </summary>
[Collection(DaemonCollection.Name)]
public sealed class ServeTests(DaemonFixture daemon)
{
    [DaemonFact]
    public async Task Sandboxes_commands_and_files_work_through_every_route()
    {
        string id = await daemon.CreateSandboxAsync(new { template = "t", timeoutSeconds = 600, metadata = new { owner = "alice" }, env = new Dictionary<string, string> { ["GREETING"] = "hello" } });
        JsonNode got = await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}"), HttpStatusCode.OK);
        Assert.Equal("running", got["state"]!.GetValue<string>());
        Assert.Equal("t", got["template"]!.GetValue<string>());
        Assert.Equal("alice", got["metadata"]!["owner"]!.GetValue<string>());
        Assert.Contains(id, (await daemon.Unix.GetStringAsync("/sandboxes?state=running&metadata.owner=alice")));
        Assert.DoesNotContain(id, (await daemon.Unix.GetStringAsync("/sandboxes?metadata.owner=bob")));
        Assert.DoesNotContain(id, (await daemon.Unix.GetStringAsync("/sandboxes?state=paused")));

        // Foreground: stdout, stderr, exit code, sandbox env, stdin.
        CommandRun run = await daemon.ExecAsync(id, DaemonFixture.Sh("echo $GREETING; echo oops >&2; exit 3"));
        Assert.Equal("hello\n", run.Stdout);
        Assert.Equal("oops\n", run.Stderr);
        Assert.Equal(3, run.Exit["exitCode"]!.GetValue<int>());
        CommandRun cat = await daemon.ExecAsync(id, new { cmd = "cat", stdin = Convert.ToBase64String("piped\n"u8.ToArray()) });
        Assert.Equal("piped\n", cat.Stdout);
        CommandRun killed = await daemon.ExecAsync(id, new { cmd = "sleep", args = new[] { "100" }, timeoutSeconds = 1 });
        Assert.True(killed.Exit["timedOut"]?.GetValue<bool>() ?? false, killed.Exit.ToJsonString());

        // Background: listed, stdin, output re-attached from the start, signal.
        CommandRun started = await daemon.ExecAsync(id, new { cmd = "/bin/sh", args = new[] { "-c", "echo ready; while read l; do echo got $l; done" }, background = true });
        Assert.True(started.Pid > 0);
        Assert.Contains($"\"pid\":{started.Pid}", await daemon.Unix.GetStringAsync($"/sandboxes/{id}/commands"));
        Assert.Equal(HttpStatusCode.NoContent, (await daemon.Unix.PostAsync($"/sandboxes/{id}/commands/{started.Pid}/stdin?close=true", new ByteArrayContent("line\n"u8.ToArray()))).StatusCode);
        CommandRun output = DaemonFixture.ParseCommand(await daemon.Unix.GetStringAsync($"/sandboxes/{id}/commands/{started.Pid}/output?from=start"));
        Assert.Equal("ready\ngot line\n", output.Stdout);
        Assert.Equal(0, output.Exit["exitCode"]!.GetValue<int>());
        CommandRun sleeper = await daemon.ExecAsync(id, new { cmd = "sleep", args = new[] { "1000" }, background = true });
        Assert.Equal(HttpStatusCode.NoContent, (await daemon.Unix.PostAsJsonAsync($"/sandboxes/{id}/commands/{sleeper.Pid}/signal", new { signal = 15 })).StatusCode);
        Assert.Equal(15, DaemonFixture.ParseCommand(await daemon.Unix.GetStringAsync($"/sandboxes/{id}/commands/{sleeper.Pid}/output")).Exit["signal"]!.GetValue<int>());

        // Files: a 3 MiB upload streamed in and out byte for byte; list, stat, mkdir, move, delete.
        byte[] data = new byte[3 << 20];
        new Random(7).NextBytes(data);
        JsonNode put = await DaemonFixture.JsonAsync(await daemon.Unix.PutAsync($"/sandboxes/{id}/files?path=/root/data.bin&mode=600", new ByteArrayContent(data)), HttpStatusCode.OK);
        Assert.Equal(data.Length, put["size"]!.GetValue<long>());
        Assert.Equal(384, put["mode"]!.GetValue<int>());
        Assert.Equal(data, await daemon.Unix.GetByteArrayAsync($"/sandboxes/{id}/files?path=/root/data.bin"));
        await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/files/mkdir?path=/root/a/b", null), HttpStatusCode.OK);
        JsonNode moved = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsJsonAsync($"/sandboxes/{id}/files/move", new { from = "/root/data.bin", to = "/root/a/b/data.bin" }), HttpStatusCode.OK);
        Assert.Equal("/root/a/b/data.bin", moved["path"]!.GetValue<string>());
        JsonArray list = (await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}/files/list?path=/root&depth=3"), HttpStatusCode.OK)).AsArray();
        Assert.Contains(list, e => e!["path"]!.GetValue<string>() == "/root/a/b/data.bin" && e["type"]!.GetValue<string>() == "file");
        Assert.Contains(list, e => e!["path"]!.GetValue<string>() == "/root/a" && e["type"]!.GetValue<string>() == "dir");
        JsonNode stat = await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}/files/stat?path=/root/a/b/data.bin"), HttpStatusCode.OK);
        Assert.Equal("0:0", stat["owner"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.NoContent, (await daemon.Unix.DeleteAsync($"/sandboxes/{id}/files?path=/root/a")).StatusCode);
        await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}/files/stat?path=/root/a"), HttpStatusCode.NotFound);

        // Timeout: the clock restarts now.
        JsonNode timed = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsJsonAsync($"/sandboxes/{id}/timeout", new { timeoutSeconds = 3600 }), HttpStatusCode.OK);
        Assert.True(timed["endAt"]!.GetValue<DateTime>() > DateTime.UtcNow.AddMinutes(59));

        // Bad input is a 400/404 problem, never a 500.
        JsonNode bad = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/commands", new StringContent("{not json", Encoding.UTF8, "application/json")), HttpStatusCode.BadRequest);
        Assert.Contains("JSON", bad["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        await DaemonFixture.JsonAsync(await daemon.Unix.PostAsJsonAsync($"/sandboxes/{id}/commands", new { args = new[] { "x" } }), HttpStatusCode.BadRequest);
        await DaemonFixture.JsonAsync(await daemon.Unix.PostAsJsonAsync("/sandboxes", new { template = "t", timeoutSeconds = 999999 }), HttpStatusCode.BadRequest);
        await DaemonFixture.JsonAsync(await daemon.Unix.PostAsJsonAsync("/sandboxes", new { template = "nope" }), HttpStatusCode.NotFound);
        await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}/files?path=relative"), HttpStatusCode.BadRequest);
        await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}/files?path=/nope"), HttpStatusCode.NotFound);
        await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}/commands/99999/output"), HttpStatusCode.NotFound);
        await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync("/sandboxes/sbx-0000"), HttpStatusCode.NotFound);
        await DaemonFixture.JsonAsync(await daemon.Unix.DeleteAsync("/templates/t"), HttpStatusCode.Conflict);

        Assert.Equal(HttpStatusCode.NoContent, (await daemon.Unix.DeleteAsync($"/sandboxes/{id}")).StatusCode);
        await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}"), HttpStatusCode.NotFound);
        Assert.Empty(daemon.Qemus());
    }

    [DaemonFact]
    public async Task Tcp_needs_an_api_key_and_the_unix_socket_does_not()
    {
        using HttpClient none = daemon.Tcp(null);
        using HttpClient wrong = daemon.Tcp("vk_" + new string('0', 64));
        using HttpClient right = daemon.Tcp(daemon.ApiKey);
        foreach (string path in new[] { "/sandboxes", "/templates", "/openapi/v1.json", "/sandboxes/x/files?path=/etc/passwd" })
        {
            JsonNode refused = await DaemonFixture.JsonAsync(await none.GetAsync(path), HttpStatusCode.Unauthorized);
            Assert.Contains("X-API-Key", refused["detail"]!.GetValue<string>(), StringComparison.Ordinal);
            await DaemonFixture.JsonAsync(await wrong.GetAsync(path), HttpStatusCode.Unauthorized);
        }
        JsonArray templates = (await DaemonFixture.JsonAsync(await right.GetAsync("/templates"), HttpStatusCode.OK)).AsArray();
        Assert.Equal("t", templates.Single()!["name"]!.GetValue<string>());
        Assert.True(templates.Single()!["hasSnapshot"]!.GetValue<bool>());
        JsonNode openapi = await DaemonFixture.JsonAsync(await right.GetAsync("/openapi/v1.json"), HttpStatusCode.OK);
        Assert.NotNull(openapi["paths"]!["/sandboxes/{id}/commands"]);
        await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync("/templates/t"), HttpStatusCode.OK);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(daemon.Socket));
        }

        // A removed key stops working at once.
        (string Key, string Id) extra = await NewKeyAsync();
        using HttpClient second = daemon.Tcp(extra.Key);
        await DaemonFixture.JsonAsync(await second.GetAsync("/sandboxes"), HttpStatusCode.OK);
        Assert.Equal(0, (await VesselCli.RunAsync(CancellationToken.None, "keys", "rm", extra.Id, "--home", daemon.Home)).ExitCode);
        await DaemonFixture.JsonAsync(await second.GetAsync("/sandboxes"), HttpStatusCode.Unauthorized);
        Assert.DoesNotContain(extra.Key, (await VesselCli.RunAsync(CancellationToken.None, "keys", "ls", "--home", daemon.Home)).StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain(extra.Key, await File.ReadAllTextAsync(Path.Combine(daemon.Home, "state.db")), StringComparison.Ordinal);
    }

    private async Task<(string Key, string Id)> NewKeyAsync()
    {
        ProcessResult created = await VesselCli.RunAsync(CancellationToken.None, "keys", "create", "--name", "extra", "--home", daemon.Home);
        Assert.Equal(0, created.ExitCode);
        return (created.StandardOutput.Trim(), created.StandardError.Split(' ')[2]);
    }

    [DaemonFact]
    public async Task Hostile_file_paths_stay_inside_the_guest()
    {
        string id = await daemon.CreateSandboxAsync(new { template = "t" });
        string marker = Path.Combine("/tmp", "vessel-escape-" + Guid.NewGuid().ToString("N"));
        try
        {
            // '..' stops at the guest's root: this is the guest's passwd, not the host's.
            string passwd = await daemon.Unix.GetStringAsync($"/sandboxes/{id}/files?path=/../../../../etc/passwd");
            Assert.Equal("root:x:0:0:root:/root:/bin/sh\n", passwd);
            // Symlinks resolve in the guest: one that names the host's files reaches the guest's instead.
            await daemon.ExecAsync(id, DaemonFixture.Sh($"ln -s /../../..{marker} /root/out; ln -s /../../../etc /root/etc-link; mkdir -p /root/d; ln -s /../../../tmp /root/d/up"));
            JsonNode link = await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}/files/stat?path=/root/out"), HttpStatusCode.OK);
            Assert.Equal("symlink", link["type"]!.GetValue<string>());
            Assert.Equal(passwd, await daemon.Unix.GetStringAsync($"/sandboxes/{id}/files?path=/root/etc-link/passwd"));
            await DaemonFixture.JsonAsync(await daemon.Unix.PutAsync($"/sandboxes/{id}/files?path=/root/out", new ByteArrayContent("x"u8.ToArray())), HttpStatusCode.OK);
            await DaemonFixture.JsonAsync(await daemon.Unix.PutAsync($"/sandboxes/{id}/files?path=/root/d/up/{Path.GetFileName(marker)}", new ByteArrayContent("y"u8.ToArray())), HttpStatusCode.OK);
            await DaemonFixture.JsonAsync(await daemon.Unix.PostAsJsonAsync($"/sandboxes/{id}/files/move", new { from = "/root/etc-link/passwd", to = $"/../..{marker}.moved" }), HttpStatusCode.OK);
            Assert.False(File.Exists(marker), "a write through a guest symlink reached the host");
            Assert.False(File.Exists(marker + ".moved"), "a move reached the host");
            Assert.Equal("y", (await daemon.ExecAsync(id, new { cmd = "cat", args = new[] { marker } })).Stdout);
            await DaemonFixture.JsonAsync(await daemon.Unix.PutAsync($"/sandboxes/{id}/files?path=/root/x%00y", new ByteArrayContent([])), HttpStatusCode.BadRequest);
        }
        finally
        {
            await daemon.Unix.DeleteAsync($"/sandboxes/{id}");
        }
    }

    [DaemonFact]
    public async Task Five_pause_resume_cycles_keep_every_file_and_a_running_process()
    {
        string id = await daemon.CreateSandboxAsync(new { template = "t" });
        try
        {
            CommandRun counter = await daemon.ExecAsync(id, DaemonFixture.Sh("i=0; while true; do i=$((i+1)); echo $i > /root/count; echo tick $i; sleep 1; done", background: true));
            for (int cycle = 1; cycle <= 5; cycle++)
            {
                await daemon.ExecAsync(id, DaemonFixture.Sh($"dd if=/dev/urandom of=/root/file{cycle} bs=64k count=4 2>/dev/null; sync"));
                string before = (await daemon.ExecAsync(id, DaemonFixture.Sh("cat /root/file* | md5sum"))).Stdout;
                JsonNode paused = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/pause", null), HttpStatusCode.OK);
                Assert.Equal("paused", paused["state"]!.GetValue<string>());
                Assert.Empty(daemon.Qemus());
                JsonNode refused = (await daemon.ExecAsync(id, DaemonFixture.Sh("true"), HttpStatusCode.Conflict)).Exit;
                Assert.Contains("paused", refused["detail"]!.GetValue<string>(), StringComparison.Ordinal);
                await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/pause", null), HttpStatusCode.Conflict);
                Assert.Contains(id, await daemon.Unix.GetStringAsync("/sandboxes?state=paused"));
                JsonNode resumed = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/resume", null), HttpStatusCode.OK);
                Assert.Equal("running", resumed["state"]!.GetValue<string>());
                Assert.Equal(before, (await daemon.ExecAsync(id, DaemonFixture.Sh("cat /root/file* | md5sum"))).Stdout);
                Assert.Equal(cycle.ToString(System.Globalization.CultureInfo.InvariantCulture), (await daemon.ExecAsync(id, DaemonFixture.Sh("ls /root/file* | wc -l"))).Stdout.Trim());
            }
            // The counter ran through all five: still listed, still counting.
            Assert.Contains($"\"pid\":{counter.Pid}", await daemon.Unix.GetStringAsync($"/sandboxes/{id}/commands"));
            int first = int.Parse((await daemon.ExecAsync(id, DaemonFixture.Sh("cat /root/count"))).Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
            await Task.Delay(3000);
            int later = int.Parse((await daemon.ExecAsync(id, DaemonFixture.Sh("cat /root/count"))).Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(later > first, $"the counter stopped at {first}");
            Assert.Equal(HttpStatusCode.NoContent, (await daemon.Unix.PostAsJsonAsync($"/sandboxes/{id}/commands/{counter.Pid}/signal", new { signal = 9 })).StatusCode);
            CommandRun output = DaemonFixture.ParseCommand(await daemon.Unix.GetStringAsync($"/sandboxes/{id}/commands/{counter.Pid}/output?from=start"));
            // Every line the counter wrote is there, in order, across the five pauses: a pause
            // waits for the agent to confirm the detach, so no line is in flight when the VM stops.
            int[] ticks = output.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => int.Parse(l["tick ".Length..], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            Assert.True(ticks.Length >= 5, "the counter wrote almost nothing: " + output.Stdout);
            Assert.Equal(Enumerable.Range(1, ticks.Length), ticks);
            Assert.Equal(9, output.Exit["signal"]!.GetValue<int>());
        }
        finally
        {
            await daemon.Unix.DeleteAsync($"/sandboxes/{id}");
        }
        Assert.Empty(Directory.GetDirectories(Path.Combine(daemon.Home, "snapshots"), "sbx-*"));
    }

    [DaemonFact]
    public async Task A_timeout_kills_the_sandbox_or_pauses_it_with_auto_pause()
    {
        string killed = await daemon.CreateSandboxAsync(new { template = "t", timeoutSeconds = 2 });
        string paused = await daemon.CreateSandboxAsync(new { template = "t", timeoutSeconds = 2, autoPause = true });
        try
        {
            var deadline = DateTime.UtcNow.AddMinutes(2);
            while (DateTime.UtcNow < deadline)
            {
                bool gone = (await daemon.Unix.GetAsync($"/sandboxes/{killed}")).StatusCode == HttpStatusCode.NotFound;
                HttpResponseMessage p = await daemon.Unix.GetAsync($"/sandboxes/{paused}");
                if (gone && (await p.Content.ReadAsStringAsync()).Contains("\"paused\"", StringComparison.Ordinal))
                {
                    break;
                }
                await Task.Delay(500);
            }
            await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{killed}"), HttpStatusCode.NotFound);
            Assert.Equal("paused", (await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{paused}"), HttpStatusCode.OK))["state"]!.GetValue<string>());
            Assert.Empty(daemon.Qemus());
        }
        finally
        {
            await daemon.Unix.DeleteAsync($"/sandboxes/{paused}");
        }
    }

    [DaemonFact]
    public async Task Kill_9_of_the_daemon_keeps_the_paused_sandbox_and_cleans_the_running_one()
    {
        string running = await daemon.CreateSandboxAsync(new { template = "t" });
        string paused = await daemon.CreateSandboxAsync(new { template = "t" });
        await daemon.ExecAsync(paused, DaemonFixture.Sh("echo kept > /root/kept"));
        await daemon.ExecAsync(paused, new { cmd = "sleep", args = new[] { "100000" }, background = true });
        await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{paused}/pause", null), HttpStatusCode.OK);
        Assert.NotEmpty(daemon.Qemus());

        await daemon.StopAsync(kill9: true);
        await daemon.StartAsync(CancellationToken.None);

        await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{running}"), HttpStatusCode.NotFound);
        Assert.Empty(daemon.Qemus());
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(daemon.Home, "sandboxes")));
        Assert.Contains("was running when the previous daemon stopped", daemon.DaemonLog, StringComparison.Ordinal);
        Assert.Equal("paused", (await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{paused}"), HttpStatusCode.OK))["state"]!.GetValue<string>());
        await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{paused}/resume", null), HttpStatusCode.OK);
        Assert.Equal("kept\n", await daemon.Unix.GetStringAsync($"/sandboxes/{paused}/files?path=/root/kept"));
        Assert.Contains("sleep 100000", (await daemon.ExecAsync(paused, DaemonFixture.Sh("ps"))).Stdout, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NoContent, (await daemon.Unix.DeleteAsync($"/sandboxes/{paused}")).StatusCode);
        Assert.Empty(daemon.Qemus());
    }
}
