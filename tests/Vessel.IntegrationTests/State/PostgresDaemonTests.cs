using Vessel.IntegrationTests.Service;

namespace Vessel.IntegrationTests.State;

/// <summary>A real PostgreSQL and a real daemon whose state (template, key, sandboxes) lives there (VESSEL_STATE).</summary>
public sealed class PostgresDaemonFixture : IAsyncLifetime
{
    private PostgresServer? _server;

    public DaemonFixture? Daemon { get; private set; }

    public string Url { get; private set; } = string.Empty;

    public async Task InitializeAsync()
    {
        if (Requirements.FirstMissing([.. DaemonFixture.Requirements, PostgresServer.BinDirectory + "/initdb"]) is not null)
        {
            return;
        }
        _server = await PostgresServer.StartAsync(CancellationToken.None);
        Url = await _server.CreateDatabaseAsync(CancellationToken.None);
        Daemon = new DaemonFixture { Environment = new Dictionary<string, string> { ["VESSEL_STATE"] = Url } };
        await Daemon.InitializeAsync();
    }

    public async Task DisposeAsync()
    {
        try
        {
            if (Daemon is not null)
            {
                await Daemon.DisposeAsync();
            }
        }
        finally
        {
            if (_server is not null)
            {
                await _server.DisposeAsync();
            }
        }
    }
}

public sealed class PostgresDaemonTests(PostgresDaemonFixture fixture) : IClassFixture<PostgresDaemonFixture>
{
    private static async Task<string> ExecAsync(DaemonFixture d, string id, string script)
    {
        (string stdout, _, JsonNode exit, _) = await d.ExecAsync(id, DaemonFixture.Sh(script));
        Assert.Equal(0, exit["exitCode"]?.GetValue<int>() ?? -1);
        return stdout;
    }

    [DaemonFact("/usr/lib/postgresql/15/bin/initdb")]
    public async Task A_daemon_on_postgres_state_keeps_a_paused_sandbox_across_a_restart_and_resumes_it_with_its_files()
    {
        DaemonFixture d = fixture.Daemon!;
        // Everything the CLI and the daemon wrote went to PostgreSQL: the home has no SQLite file.
        Assert.False(File.Exists(Path.Combine(d.Home, "state.db")), "the template build or the key went to the home's SQLite file");
        string id = await d.CreateSandboxAsync(new { template = "t" });
        try
        {
            await ExecAsync(d, id, "echo kept > /root/kept; sync");
            Assert.Equal("paused", (await DaemonFixture.JsonAsync(await d.Unix.PostAsync($"/sandboxes/{id}/pause", null), HttpStatusCode.OK))["state"]!.GetValue<string>());

            await d.StopAsync(kill9: false);
            await d.StartAsync(CancellationToken.None);

            JsonNode back = await DaemonFixture.JsonAsync(await d.Unix.GetAsync($"/sandboxes/{id}"), HttpStatusCode.OK);
            Assert.Equal("paused", back["state"]!.GetValue<string>());
            Assert.Equal("running", (await DaemonFixture.JsonAsync(await d.Unix.PostAsync($"/sandboxes/{id}/resume", null), HttpStatusCode.OK))["state"]!.GetValue<string>());
            Assert.Equal("kept\n", await ExecAsync(d, id, "cat /root/kept"));
            // The key lives in PostgreSQL too: TCP with it is let in, without it is not.
            using HttpClient keyed = d.Tcp(d.ApiKey);
            Assert.Equal(HttpStatusCode.OK, (await keyed.GetAsync($"/sandboxes/{id}")).StatusCode);
            using HttpClient anonymous = d.Tcp(null);
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync($"/sandboxes/{id}")).StatusCode);
        }
        finally
        {
            await d.Unix.DeleteAsync($"/sandboxes/{id}");
        }
        Assert.False(File.Exists(Path.Combine(d.Home, "state.db")));
        Assert.DoesNotContain(id, await d.Unix.GetStringAsync("/sandboxes"), StringComparison.Ordinal);
    }
}
