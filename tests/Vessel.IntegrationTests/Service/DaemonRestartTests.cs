namespace Vessel.IntegrationTests.Service;

/// <summary>
/// What survives the daemon and what it reclaims: a crash in the middle of a pause, lost
/// running sandboxes reported with their reason, background commands of a paused sandbox across
/// a kill -9. Shares the daemon of <see cref="ServeTests"/> (one template build for both).
/// </summary>
[Collection(DaemonCollection.Name)]
public sealed class DaemonRestartTests(DaemonFixture daemon)
{
    private string LayerDirectory(string layer) => Path.Combine(daemon.Home, "blocks", "builds", layer);

    [DaemonFact]
    public async Task A_crash_between_a_pause_export_and_its_row_leaves_no_layer_after_the_restart()
    {
        await daemon.StopAsync(kill9: false);
        bool plainDaemon = false;
        try
        {
            await daemon.StartAsync(new Dictionary<string, string> { ["VESSEL_SERVICE_TEST_CRASH"] = "after-pause-export" }, CancellationToken.None);
            string id = await daemon.CreateSandboxAsync(new { template = "t" });
            await daemon.ExecAsync(id, DaemonFixture.Sh("echo data > /root/data; sync"));

            // The daemon kills itself after the layer is exported, before the row says paused.
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => daemon.Unix.PostAsync($"/sandboxes/{id}/pause", null));
            string intent = Assert.Single(Directory.GetFiles(Path.Combine(daemon.Home, "snapshots"), id + "-*.layer"));
            string layer = File.ReadAllText(intent);
            Assert.True(Directory.Exists(LayerDirectory(layer)), "the crash point came before the export: the test tests nothing");
            await daemon.StopAsync(kill9: true);

            await daemon.StartAsync(CancellationToken.None);
            plainDaemon = true;
            Assert.False(Directory.Exists(LayerDirectory(layer)), $"the orphan layer {layer} is still in the store");
            Assert.False(File.Exists(intent));
            Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(daemon.Home, "snapshots"), id + "*"));
            Assert.Contains($"Reclaimed layer {layer}", daemon.DaemonLog, StringComparison.Ordinal);
            // Its row still said running: it is reported gone, with the reason, never running.
            JsonNode gone = await DaemonFixture.JsonAsync(await daemon.Unix.GetAsync($"/sandboxes/{id}"), HttpStatusCode.NotFound);
            Assert.Contains("running when the daemon serving its disk stopped", gone["detail"]!.GetValue<string>(), StringComparison.Ordinal);
            Assert.DoesNotContain(id, await daemon.Unix.GetStringAsync("/sandboxes"), StringComparison.Ordinal);
            Assert.Empty(daemon.Qemus());
            Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(daemon.Home, "sandboxes")));
        }
        finally
        {
            // Whatever failed above, the next test gets a daemon without the crash point.
            if (!plainDaemon || !daemon.IsRunning)
            {
                await daemon.StopAsync(kill9: true);
                await daemon.StartAsync(CancellationToken.None);
            }
        }
    }

    [DaemonFact]
    public async Task Background_commands_of_a_paused_sandbox_keep_their_pid_and_output_across_a_kill_9_of_the_daemon()
    {
        string id = await daemon.CreateSandboxAsync(new { template = "t" });
        try
        {
            (_, _, _, int pid) = await daemon.ExecAsync(id, DaemonFixture.Sh("i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done", background: true));
            await Task.Delay(2500);
            await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/pause", null), HttpStatusCode.OK);

            await daemon.StopAsync(kill9: true);
            await daemon.StartAsync(CancellationToken.None);

            Assert.Contains($"\"pid\":{pid}", await daemon.Unix.GetStringAsync($"/sandboxes/{id}/commands"), StringComparison.Ordinal);
            await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/resume", null), HttpStatusCode.OK);
            await Task.Delay(2500);
            Assert.Equal(HttpStatusCode.NoContent, (await daemon.Unix.PostAsJsonAsync($"/sandboxes/{id}/commands/{pid}/signal", new { signal = 9 })).StatusCode);
            (string stdout, _, JsonNode exit, _) = DaemonFixture.ParseCommand(await daemon.Unix.GetStringAsync($"/sandboxes/{id}/commands/{pid}/output?from=start"));
            int[] ticks = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => int.Parse(l["tick ".Length..], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            // The output from before the restart was saved with the pause, the rest came after the resume: all of it, in order.
            Assert.True(ticks.Length >= 3, "too few ticks: " + stdout);
            Assert.Equal(Enumerable.Range(1, ticks.Length), ticks);
            Assert.Equal(9, exit["signal"]!.GetValue<int>());
        }
        finally
        {
            await daemon.Unix.DeleteAsync($"/sandboxes/{id}");
        }
        Assert.Empty(Directory.GetDirectories(Path.Combine(daemon.Home, "snapshots"), "sbx-*"));
    }
}
