using Vessel.IntegrationTests.Sandboxes;

namespace Vessel.IntegrationTests.Service;

/// <summary>Pods through `vessel serve` (issue 15): create, per-container commands and files, pause/resume, delete.</summary>
[Collection(DaemonCollection.Name)]
public sealed class PodApiTests(DaemonFixture daemon)
{
    private Task<CommandRun> ExecAsync(string id, string? container, string script, HttpStatusCode expected = HttpStatusCode.OK)
        => daemon.ExecAsync(id, DaemonFixture.Sh(script, container), expected);

    private static int ExitCode(CommandRun run) => run.Exit["exitCode"]!.GetValue<int>();

    private async Task<JsonNode> GetAsync(string id) => await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}"), HttpStatusCode.OK);

    private static Dictionary<string, string> States(JsonNode sandbox)
        => sandbox["containers"]!.AsArray().ToDictionary(c => c!["name"]!.GetValue<string>(), c => c!["state"]!.GetValue<string>());

    [DaemonFact("busybox-image", Timeout = 900_000)]
    public async Task A_pod_keeps_its_upper_writes_and_running_processes_across_pause_a_daemon_restart_and_resume_and_leaves_nothing_after_delete()
    {
        string id = await daemon.CreateSandboxAsync(new
        {
            containers = DaemonFixture.WebAndSidePod("sh", "-c", "i=0; while true; i=$((i+1)); echo $i > /count; do sleep 1; done"),
            rootfs = "block",
            memoryMb = 256,
            upperMb = 32,
            timeoutSeconds = 900,
        });
        JsonNode created = await GetAsync(id);
        Assert.Equal(new Dictionary<string, string> { ["web"] = "running", ["side"] = "running" }, States(created));
        Assert.Equal("", created["template"]!.GetValue<string>());

        Assert.Equal(0, ExitCode(await ExecAsync(id, "web", "echo kept > /upper-file")));
        Assert.NotEqual(0, ExitCode(await ExecAsync(id, "side", "test -e /upper-file")));
        Assert.Equal(TestImages.VariantMarker, (await ExecAsync(id, "side", "cat " + TestImages.VariantMarkerPath)).Stdout);
        Assert.Equal("kept\n", await daemon.Unix.GetStringAsync($"/sandboxes/{id}/files?path=/upper-file&container=web"));
        Assert.Contains("is a pod", (await ExecAsync(id, null, "true", HttpStatusCode.BadRequest)).Exit["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("no container 'nope'", (await ExecAsync(id, "nope", "true", HttpStatusCode.NotFound)).Exit["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        int before = int.Parse((await ExecAsync(id, "web", "cat /count")).Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);

        JsonNode paused = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/pause", null), HttpStatusCode.OK);
        Assert.Equal("paused", paused["state"]!.GetValue<string>());
        Assert.Empty(SandboxEnvironment.QemusNaming(daemon.Home));
        Assert.Equal("unknown", States(await GetAsync(id))["web"]);

        // A daemon that restarts adopts the paused pod from the description beside its snapshot.
        await daemon.StopAsync(kill9: true);
        await daemon.StartAsync(CancellationToken.None);
        JsonNode adopted = await GetAsync(id);
        Assert.Equal("paused", adopted["state"]!.GetValue<string>());
        Assert.Equal(["web", "side"], States(adopted).Keys);

        JsonNode resumed = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/resume", null), HttpStatusCode.OK);
        Assert.Equal("running", resumed["state"]!.GetValue<string>());
        Assert.Equal("kept\n", (await ExecAsync(id, "web", "cat /upper-file")).Stdout);
        Assert.Equal(new Dictionary<string, string> { ["web"] = "running", ["side"] = "running" }, States(await GetAsync(id)));
        int after = before;
        for (int i = 0; i < 100 && after <= before; i++)
        {
            await Task.Delay(200);
            after = int.Parse((await ExecAsync(id, "web", "cat /count")).Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        Assert.True(after > before, $"the counter of the container's first process did not go on after the resume ({before} -> {after})");

        using (HttpResponseMessage deleted = await daemon.Unix.DeleteAsync($"/sandboxes/{id}"))
        {
            Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        }
        Assert.Empty(SandboxEnvironment.QemusNaming(daemon.Home));
        string sandboxes = Path.Combine(daemon.Home, "sandboxes");
        Assert.True(!Directory.Exists(sandboxes) || Directory.GetFileSystemEntries(sandboxes).Length == 0, "sandbox directories left");
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(daemon.Home, "snapshots"), "sbx-*"));
    }

    [DaemonFact("busybox-image", Timeout = 900_000)]
    public async Task Images_prune_keeps_the_image_disks_of_a_paused_block_pod_which_then_resumes()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        string id = await daemon.CreateSandboxAsync(new
        {
            containers = new object[] { new { name = "web", image = TestImages.BusyboxOciReference, command = new[] { "sleep", "100000" } } },
            rootfs = "block",
            memoryMb = 256,
            upperMb = 16,
            timeoutSeconds = 900,
        });
        try
        {
            Assert.Equal(0, ExitCode(await ExecAsync(id, "web", "echo kept > /upper-file")));
            JsonNode paused = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/pause", null), HttpStatusCode.OK);
            Assert.Equal("paused", paused["state"]!.GetValue<string>());
            Assert.Empty(SandboxEnvironment.QemusNaming(daemon.Home)); // no VM has the image disk open now
            string[] disks = Directory.GetFiles(Path.Combine(daemon.Home, "images"), "*.ext4");
            Assert.NotEmpty(disks);

            ProcessResult pruned = await VesselCli.RunAsync(cts.Token, "images", "prune", "--home", daemon.Home);
            Assert.True(pruned.ExitCode == 0, pruned.StandardError);
            string[] kept = Directory.GetFiles(Path.Combine(daemon.Home, "images"), "*.ext4");
            Assert.NotEmpty(kept);
            Assert.All(kept, k => Assert.DoesNotContain(k, pruned.StandardOutput, StringComparison.Ordinal));

            JsonNode resumed = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/resume", null), HttpStatusCode.OK);
            Assert.Equal("running", resumed["state"]!.GetValue<string>());
            Assert.Equal("kept\n", (await ExecAsync(id, "web", "cat /upper-file")).Stdout);
        }
        finally
        {
            using HttpResponseMessage deleted = await daemon.Unix.DeleteAsync($"/sandboxes/{id}");
            Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        }
        Assert.Empty(SandboxEnvironment.QemusNaming(daemon.Home));
    }

    [DaemonFact("busybox-image", Timeout = 600_000)]
    public async Task The_cli_creates_a_pod_from_a_file_and_runs_a_command_in_a_named_container()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        string file = daemon.Work!.Combine("pod.json");
        await File.WriteAllTextAsync(file, $$"""
            { "containers": [
                { "name": "app", "image": "{{TestImages.BusyboxOciReference}}", "command": ["sleep", "100000"], "env": { "WHO": "app" } },
                { "name": "job", "image": "{{TestImages.BusyboxVariantTarball}}", "command": ["sh", "-c", "exit 3"] } ],
              "rootfs": "block", "upperMb": 16 }
            """, cts.Token);
        ProcessResult created = await VesselCli.RunAsync(cts.Token, "sandbox", "create", "-f", file, "--timeout", "600", "--home", daemon.Home);
        Assert.True(created.ExitCode == 0, created.StandardError);
        string id = created.StandardOutput.Trim();
        try
        {
            ProcessResult exec = await VesselCli.RunAsync(cts.Token, "sandbox", "exec", id, "-c", "app", "--home", daemon.Home, "--", "sh", "-c", "echo $WHO $(hostname)");
            Assert.True(exec.ExitCode == 0, exec.StandardError);
            Assert.Equal("app app\n", exec.StandardOutput);
            ProcessResult noContainer = await VesselCli.RunAsync(cts.Token, "sandbox", "exec", id, "--home", daemon.Home, "--", "true");
            Assert.NotEqual(0, noContainer.ExitCode);
            Assert.Contains("is a pod", noContainer.StandardError, StringComparison.Ordinal);
            JsonNode? job = null;
            for (int i = 0; i < 100 && job?["state"]?.GetValue<string>() != "exited"; i++)
            {
                await Task.Delay(200, cts.Token);
                job = (await GetAsync(id))["containers"]!.AsArray().Single(c => c!["name"]!.GetValue<string>() == "job");
            }
            Assert.Equal("exited", job!["state"]!.GetValue<string>());
            Assert.Equal(3, job["exitCode"]!.GetValue<int>());
        }
        finally
        {
            ProcessResult killed = await VesselCli.RunAsync(CancellationToken.None, "sandbox", "kill", id, "--home", daemon.Home);
            Assert.True(killed.ExitCode == 0, killed.StandardError);
        }
        Assert.Empty(SandboxEnvironment.QemusNaming(daemon.Home));
    }

    [DaemonFact]
    public async Task A_container_name_holding_the_derived_separator_is_refused_with_400()
    {
        using HttpResponseMessage response = await daemon.Unix.PostAsJsonAsync("/sandboxes", new
        {
            containers = new object[] { new { name = "web", image = "oci:/nowhere:x" }, new { name = "web_ovl", image = "oci:/nowhere:x" } },
        });
        JsonNode problem = await DaemonFixture.JsonAsync(response, HttpStatusCode.BadRequest);
        Assert.Contains("containers[1].name", problem["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("'_ovl'", problem["detail"]!.GetValue<string>(), StringComparison.Ordinal);
    }
}
