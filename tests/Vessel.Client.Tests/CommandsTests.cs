using System.Text;

namespace Vessel.Client.Tests;

public sealed class CommandsTests
{
    [Fact(Timeout = 30_000)]
    public async Task Run_sends_the_command_and_collects_stdout_stderr_and_the_exit_code()
    {
        JsonElement? sent = null;
        await using var daemon = await StartAsync(async context =>
        {
            if (context.Request.Method == "GET")
            {
                await SandboxAsync(context, "sb");
                return;
            }
            Assert.Equal("/sandboxes/sb/commands", context.Request.Path.Value);
            sent = JsonDocument.Parse(await BodyAsync(context)).RootElement.Clone();
            await BeginEventsAsync(context);
            await EventAsync(context, """{"type":"start","pid":42}""");
            await EventAsync(context, Data("stdout", "hi\n"));
            await EventAsync(context, Data("stderr", "oops\n"));
            await EventAsync(context, "");
            await EventAsync(context, Data("stdout", "there\n"));
            await EventAsync(context, """{"type":"exit","exitCode":3}""");
        });
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await client.Sandboxes.ConnectAsync("sb");
        var chunks = new List<string>();

        CommandResult r = await sandbox.Commands.RunAsync("sh", ["-c", "echo hi; exit 3"], new CommandOptions
        {
            Env = new Dictionary<string, string> { ["X"] = "y" },
            Cwd = "/tmp",
            User = "nobody",
            Stdin = "in"u8.ToArray(),
            Timeout = TimeSpan.FromSeconds(2.5),
            OnStdout = d => chunks.Add(Encoding.UTF8.GetString(d.Span)),
        });

        Assert.Equal(42, r.Pid);
        Assert.Equal(3, r.ExitCode);
        Assert.Null(r.Signal);
        Assert.Equal("hi\nthere\n", r.Stdout);
        Assert.Equal("oops\n", r.Stderr);
        Assert.Equal(["hi\n", "there\n"], chunks);
        JsonElement body = sent!.Value;
        Assert.Equal("sh", body.GetProperty("cmd").GetString());
        Assert.Equal(["-c", "echo hi; exit 3"], body.GetProperty("args").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal("y", body.GetProperty("env").GetProperty("X").GetString());
        Assert.Equal("/tmp", body.GetProperty("cwd").GetString());
        Assert.Equal("nobody", body.GetProperty("user").GetString());
        Assert.Equal(Convert.ToBase64String("in"u8), body.GetProperty("stdin").GetString());
        Assert.False(body.GetProperty("background").GetBoolean());
        Assert.Equal(2.5, body.GetProperty("timeoutSeconds").GetDouble());
    }

    [Fact(Timeout = 30_000)]
    public async Task A_signal_is_reported_as_128_plus_the_signal()
    {
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            await BeginEventsAsync(context);
            await EventAsync(context, """{"type":"start","pid":7}""");
            await EventAsync(context, """{"type":"exit","signal":9}""");
        }));
        await using VesselClient client = daemon.CreateClient();

        CommandResult r = await (await ConnectAsync(client)).Commands.RunAsync("sleep", ["100"]);

        Assert.Equal(137, r.ExitCode);
        Assert.Equal(9, r.Signal);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_daemon_that_dies_mid_stream_gives_a_connection_exception_without_hanging()
    {
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            await BeginEventsAsync(context);
            await EventAsync(context, """{"type":"start","pid":9}""");
            await EventAsync(context, Data("stdout", "partial"));
            context.Abort(); // the daemon's process dies: the connection is reset mid-response
        }));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await ConnectAsync(client);

        var e = await Assert.ThrowsAsync<VesselConnectionException>(() => sandbox.Commands.RunAsync("cat"));

        Assert.Contains("run 'cat' in sandbox sb", e.Message, StringComparison.Ordinal);
        Assert.Contains("Did the daemon stop?", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_stream_that_ends_before_the_exit_line_is_an_error_naming_the_pid()
    {
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            await BeginEventsAsync(context);
            await EventAsync(context, """{"type":"start","pid":11}""");
        }));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await ConnectAsync(client);

        var e = await Assert.ThrowsAsync<VesselConnectionException>(() => sandbox.Commands.RunAsync("true"));

        Assert.Contains("before process 11 exited", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task Cancelling_mid_stream_stops_reading_and_closes_the_request()
    {
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            context.RequestAborted.Register(() => aborted.TrySetResult());
            await BeginEventsAsync(context);
            await EventAsync(context, """{"type":"start","pid":5}""");
            await EventAsync(context, Data("stdout", "tick\n"));
            await Task.Delay(Timeout.Infinite, context.RequestAborted);
        }));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await ConnectAsync(client);
        using var cts = new CancellationTokenSource();

        Task<CommandResult> run = sandbox.Commands.RunAsync("yes", options: new CommandOptions { OnStdout = _ => cts.Cancel() }, cancellationToken: cts.Token);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        await aborted.Task.WaitAsync(TimeSpan.FromSeconds(10)); // the daemon saw the client go
    }

    [Fact(Timeout = 30_000)]
    public async Task A_paused_sandbox_refuses_exec_with_409_and_the_daemons_message()
    {
        await using var daemon = await StartAsync(WithSandbox(context => ProblemAsync(context, 409, "Sandbox is paused", "Sandbox sb is paused; resume it first.")));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await ConnectAsync(client);

        var e = await Assert.ThrowsAsync<VesselApiException>(() => sandbox.Commands.RunAsync("true"));

        Assert.Equal(System.Net.HttpStatusCode.Conflict, e.StatusCode);
        Assert.Equal("Could not run 'true' in sandbox sb: Sandbox sb is paused; resume it first. (HTTP 409).", e.Message);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_background_command_streams_output_takes_stdin_is_killed_and_waited_for()
    {
        var stdin = new StringBuilder();
        bool stdinClosed = false;
        string? signal = null;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var daemon = await StartAsync(async context =>
        {
            string route = context.Request.Method + " " + context.Request.Path + context.Request.QueryString;
            switch (route)
            {
                case "GET /sandboxes/sb":
                    await SandboxAsync(context, "sb");
                    break;
                case "POST /sandboxes/sb/commands":
                    Assert.True(JsonDocument.Parse(await BodyAsync(context)).RootElement.GetProperty("background").GetBoolean());
                    await BeginEventsAsync(context);
                    await EventAsync(context, """{"type":"start","pid":77}""");
                    break;
                case "GET /sandboxes/sb/commands/77/output":
                    await BeginEventsAsync(context);
                    await EventAsync(context, Data("stdout", "ready\n"));
                    await release.Task.WaitAsync(context.RequestAborted);
                    await EventAsync(context, Data("stderr", "bye\n"));
                    await EventAsync(context, """{"type":"exit","signal":9}""");
                    break;
                case "POST /sandboxes/sb/commands/77/stdin":
                    stdin.Append(await BodyAsync(context));
                    context.Response.StatusCode = 204;
                    break;
                case "POST /sandboxes/sb/commands/77/stdin?close=true":
                    stdinClosed = true;
                    context.Response.StatusCode = 204;
                    break;
                case "POST /sandboxes/sb/commands/77/signal":
                    signal = await BodyAsync(context);
                    context.Response.StatusCode = 204;
                    release.TrySetResult();
                    break;
                case "GET /sandboxes/sb/commands":
                    await JsonAsync(context, 200, """[{"pid":77,"cmd":"python3","args":["server.py"]}]""");
                    break;
                default:
                    await ProblemAsync(context, 404, "Not found", route);
                    break;
            }
        });
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await client.Sandboxes.ConnectAsync("sb");

        CommandHandle h = await sandbox.Commands.StartAsync("python3", ["server.py"]);
        Assert.Equal(77, h.Pid);
        Assert.Equal(77, Assert.Single(await sandbox.Commands.ListAsync()).Pid);
        var seen = new List<CommandOutput>();
        await foreach (CommandOutput o in h.ReadOutputAsync())
        {
            seen.Add(o);
            if (seen.Count == 1)
            {
                await h.SendStdinAsync("line\n");
                await h.SendStdinAsync("more"u8.ToArray());
                await h.CloseStdinAsync();
                await h.KillAsync();
            }
        }
        int code = await h.WaitAsync();

        Assert.Equal([(CommandStream.Stdout, "ready\n"), (CommandStream.Stderr, "bye\n")], seen.Select(o => (o.Stream, o.Text)));
        Assert.Equal("line\nmore", stdin.ToString());
        Assert.True(stdinClosed);
        Assert.Equal("""{"signal":9}""", signal);
        Assert.Equal(137, code);
        Assert.Equal(137, h.ExitCode);
    }

    [Fact(Timeout = 30_000)]
    public async Task Wait_on_a_handle_drains_the_output_until_the_exit_line()
    {
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            await BeginEventsAsync(context);
            await EventAsync(context, Data("stdout", new string('x', 100_000)));
            await EventAsync(context, """{"type":"exit","exitCode":0}""");
        }));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await ConnectAsync(client);

        Assert.Equal(0, await sandbox.Commands.Connect(5).WaitAsync());
    }

    [Fact(Timeout = 30_000)]
    public async Task An_output_line_that_is_not_json_is_reported_as_such()
    {
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            await BeginEventsAsync(context);
            await EventAsync(context, "<html>proxy error</html>");
        }));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await ConnectAsync(client);

        var e = await Assert.ThrowsAsync<VesselApiException>(() => sandbox.Commands.RunAsync("true"));

        Assert.Contains("an output line that is not JSON", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Sandbox "sb", connected to through the daemon's GET route that <see cref="WithSandbox"/> serves.</summary>
    private static Task<Sandbox> ConnectAsync(VesselClient client) => client.Sandboxes.ConnectAsync("sb");
}
