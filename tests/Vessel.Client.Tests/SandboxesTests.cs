using System.Net;

namespace Vessel.Client.Tests;

public sealed class SandboxesTests
{
    [Fact(Timeout = 30_000)]
    public async Task Create_sends_the_documented_json_and_returns_the_running_sandbox()
    {
        JsonElement? sent = null;
        await using var daemon = await ScriptedDaemon.StartAsync(async context =>
        {
            Assert.Equal("POST", context.Request.Method);
            Assert.Equal("/sandboxes", context.Request.Path.Value);
            sent = JsonDocument.Parse(await ScriptedDaemon.BodyAsync(context)).RootElement.Clone();
            await ScriptedDaemon.SandboxAsync(context, "sb-1", status: 201);
        });
        await using VesselClient client = daemon.CreateClient();

        Sandbox sandbox = await client.Sandboxes.CreateAsync(new SandboxCreateOptions
        {
            Template = "web",
            Timeout = TimeSpan.FromMinutes(5),
            Metadata = new Dictionary<string, string> { ["owner"] = "me" },
            Env = new Dictionary<string, string> { ["A"] = "1" },
        });

        Assert.Equal("sb-1", sandbox.SandboxId);
        Assert.Equal(SandboxState.Running, sandbox.State);
        Assert.Equal("me", sandbox.Info.Metadata["owner"]);
        Assert.Equal(new DateTimeOffset(2026, 12, 6, 15, 5, 0, TimeSpan.Zero), sandbox.Info.EndAt);
        JsonElement body = sent!.Value;
        Assert.Equal("web", body.GetProperty("template").GetString());
        Assert.Equal(300, body.GetProperty("timeoutSeconds").GetInt32());
        Assert.Equal("me", body.GetProperty("metadata").GetProperty("owner").GetString());
        Assert.Equal("1", body.GetProperty("env").GetProperty("A").GetString());
        Assert.False(body.TryGetProperty("autoPause", out _));
    }

    [Fact(Timeout = 30_000)]
    public async Task List_puts_the_state_and_metadata_filters_in_the_query()
    {
        string? query = null;
        await using var daemon = await ScriptedDaemon.StartAsync(async context =>
        {
            query = context.Request.QueryString.Value;
            await ScriptedDaemon.JsonAsync(context, 200, """[{"sandboxId":"a","state":"paused"},{"sandboxId":"b","state":"hibernating"}]""");
        });
        await using VesselClient client = daemon.CreateClient();

        var list = await client.Sandboxes.ListAsync(new SandboxQuery { State = SandboxState.Paused, Metadata = new Dictionary<string, string> { ["team x"] = "a&b" } });

        Assert.Equal("?state=paused&metadata.team%20x=a%26b", query);
        Assert.Equal([SandboxState.Paused, SandboxState.Unknown], list.Select(s => s.State));
    }

    [Fact(Timeout = 30_000)]
    public async Task Connect_resumes_a_paused_sandbox()
    {
        var calls = new List<string>();
        await using var daemon = await ScriptedDaemon.StartAsync(async context =>
        {
            calls.Add(context.Request.Method + " " + context.Request.Path);
            await ScriptedDaemon.SandboxAsync(context, "sb-2", context.Request.Method == "GET" ? "paused" : "running");
        });
        await using VesselClient client = daemon.CreateClient();

        Sandbox sandbox = await client.Sandboxes.ConnectAsync("sb-2");

        Assert.Equal(["GET /sandboxes/sb-2", "POST /sandboxes/sb-2/resume"], calls);
        Assert.Equal(SandboxState.Running, sandbox.State);
    }

    [Fact(Timeout = 30_000)]
    public async Task Pause_resume_timeout_and_kill_use_their_routes()
    {
        var calls = new List<string>();
        await using var daemon = await ScriptedDaemon.StartAsync(async context =>
        {
            string body = context.Request.ContentLength > 0 || context.Request.Headers.TransferEncoding.Count > 0 ? await ScriptedDaemon.BodyAsync(context) : "";
            calls.Add($"{context.Request.Method} {context.Request.Path} {body}".TrimEnd());
            switch (context.Request.Path.Value)
            {
                case "/sandboxes":
                    await ScriptedDaemon.SandboxAsync(context, "sb-3", status: 201);
                    break;
                case "/sandboxes/sb-3/pause":
                    context.Response.StatusCode = 204; // the client accepts an empty answer too
                    break;
                case "/sandboxes/sb-3/resume":
                case "/sandboxes/sb-3/timeout":
                    await ScriptedDaemon.SandboxAsync(context, "sb-3");
                    break;
                default:
                    context.Response.StatusCode = 204;
                    break;
            }
        });
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await client.Sandboxes.CreateAsync(new SandboxCreateOptions { Template = "web" });

        await sandbox.PauseAsync();
        Assert.Equal(SandboxState.Paused, sandbox.State);
        await sandbox.ResumeAsync();
        Assert.Equal(SandboxState.Running, sandbox.State);
        await sandbox.SetTimeoutAsync(TimeSpan.FromMinutes(10));
        Assert.Equal(new DateTimeOffset(2026, 12, 6, 15, 5, 0, TimeSpan.Zero), sandbox.Info.EndAt);
        await sandbox.KillAsync();

        Assert.Equal(
            ["POST /sandboxes {\"template\":\"web\"}", "POST /sandboxes/sb-3/pause", "POST /sandboxes/sb-3/resume",
             "POST /sandboxes/sb-3/timeout {\"timeoutSeconds\":600}", "DELETE /sandboxes/sb-3"],
            calls);
    }

    [Fact(Timeout = 30_000)]
    public async Task An_unknown_sandbox_is_a_SandboxNotFoundException_with_the_problem_details()
    {
        await using var daemon = await ScriptedDaemon.StartAsync(context => ScriptedDaemon.ProblemAsync(context, 404, "Sandbox not found", "No sandbox 'nope'."));
        await using VesselClient client = daemon.CreateClient();

        var e = await Assert.ThrowsAsync<SandboxNotFoundException>(() => client.Sandboxes.ConnectAsync("nope"));

        Assert.Equal("nope", e.SandboxId);
        Assert.Equal(HttpStatusCode.NotFound, e.StatusCode);
        Assert.Equal("No sandbox 'nope'.", e.Problem.Detail);
        Assert.Contains("get sandbox nope: No sandbox 'nope'. (HTTP 404)", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_wrong_state_is_a_VesselApiException_with_409_and_the_daemons_message()
    {
        await using var daemon = await ScriptedDaemon.StartAsync(async context =>
        {
            if (context.Request.Method == "GET")
            {
                await ScriptedDaemon.SandboxAsync(context, "sb-4");
                return;
            }
            await ScriptedDaemon.JsonAsync(context, 409, """{"title":"Wrong state","status":409,"detail":"Sandbox sb-4 is running, not paused.","state":"running"}""");
        });
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await client.Sandboxes.ConnectAsync("sb-4");

        var e = await Assert.ThrowsAsync<VesselApiException>(() => sandbox.ResumeAsync());

        Assert.IsNotType<SandboxNotFoundException>(e);
        Assert.Equal(HttpStatusCode.Conflict, e.StatusCode);
        Assert.Equal("running", e.Problem.Extensions["state"].GetString());
        Assert.Equal("Could not resume sandbox sb-4: Sandbox sb-4 is running, not paused. (HTTP 409).", e.Message);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_plain_text_error_body_becomes_the_message()
    {
        await using var daemon = await ScriptedDaemon.StartAsync(async context =>
        {
            context.Response.StatusCode = 502;
            await context.Response.WriteAsync("upstream exploded\n");
        });
        await using VesselClient client = daemon.CreateClient();

        var e = await Assert.ThrowsAsync<VesselApiException>(() => client.Sandboxes.ListAsync());

        Assert.Equal(HttpStatusCode.BadGateway, e.StatusCode);
        Assert.Equal("Could not list sandboxes: upstream exploded (HTTP 502).", e.Message);
    }

    [Fact(Timeout = 30_000)]
    public async Task Over_tcp_the_api_key_is_sent_and_a_401_says_how_to_get_one()
    {
        string? key = null;
        await using var daemon = await ScriptedDaemon.StartAsync(context =>
        {
            key = context.Request.Headers["X-API-Key"];
            return ScriptedDaemon.ProblemAsync(context, 401, "Unauthorized", "A valid X-API-Key is required.");
        }, tcp: true);
        await using VesselClient client = daemon.CreateClient();

        var e = await Assert.ThrowsAsync<VesselApiException>(() => client.Sandboxes.ListAsync());

        Assert.Equal("k3y", key);
        Assert.Equal(HttpStatusCode.Unauthorized, e.StatusCode);
        Assert.Contains("VESSEL_API_KEY", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task No_daemon_on_the_socket_says_so_and_how_to_start_one()
    {
        string socket = Path.Combine(Path.GetTempPath(), "vessel-no-daemon-" + Guid.NewGuid().ToString("N"), "vessel.sock");
        await using var client = new VesselClient(new VesselClientOptions { SocketPath = socket });

        var e = await Assert.ThrowsAsync<VesselConnectionException>(() => client.Sandboxes.ListAsync());

        Assert.Contains("unix:" + socket, e.Message, StringComparison.Ordinal);
        Assert.Contains("vessel serve", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_daemon_that_does_not_answer_in_time_is_a_TimeoutException_not_a_cancellation()
    {
        await using var daemon = await ScriptedDaemon.StartAsync(context => Task.Delay(Timeout.Infinite, context.RequestAborted));
        await using VesselClient client = daemon.CreateClient(requestTimeout: TimeSpan.FromMilliseconds(300));

        var e = await Assert.ThrowsAsync<TimeoutException>(() => client.Sandboxes.ListAsync());

        Assert.Contains("did not answer within 0.3 s", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_need_exactly_one_of_a_socket_and_an_address()
    {
        Assert.Throws<ArgumentException>(() => new VesselClient(new VesselClientOptions()));
        Assert.Throws<ArgumentException>(() => new VesselClient(new VesselClientOptions { SocketPath = "/x", BaseAddress = new Uri("http://h:1") }));
        Assert.Throws<ArgumentException>(() => new VesselClient(new VesselClientOptions { BaseAddress = new Uri("ftp://h:1") }));
    }
}
