using Vessel.Client;
using Vessel.IntegrationTests.Service;
using Sandbox = Vessel.Client.Sandbox;

namespace Vessel.IntegrationTests.Client;

/// <summary>
/// Vessel.Client, the CLI's client commands and the sample against a real daemon and real VMs
/// (QEMU, TCG here; the service tests' <see cref="DaemonFixture"/>, template "t"): every SDK
/// method, a template built through the API, TCP with a key, cancellation mid-stream, a daemon
/// killed mid-stream.
/// </summary>
public sealed class ClientDaemonTests(DaemonFixture daemon) : IClassFixture<DaemonFixture>
{
    private const string Template = "t";

    private VesselClient Client() => new(new VesselClientOptions { SocketPath = daemon.Socket, RequestTimeout = TimeSpan.FromMinutes(5) });
    [DaemonFact(Timeout = 900_000)]
    public async Task The_sdk_drives_a_sandbox_through_every_method_of_a_real_daemon()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        CancellationToken ct = cts.Token;
        await using VesselClient client = Client();
        Assert.Contains(await client.Templates.ListAsync(ct), t => t.Name == Template);
        // A template built through the API, on top of the fixture's.
        string buildId = await client.Templates.BuildAsync("""{"name": "sdk", "fromTemplate": "t", "steps": [{"run": "echo built-by-the-daemon > /etc/sdk-test"}]}""", ct);
        var log = new StringBuilder();
        BuildInfo build = await client.Templates.WaitForBuildAsync(buildId, line => log.AppendLine(line), ct);
        Assert.True(build.Status == BuildStatus.Succeeded, $"{build.Error}\n{log}");
        Assert.True((await client.Templates.ListAsync(ct)).Single(t => t.Name == "sdk").HasSnapshot);
        // Over TCP: the key is sent; a wrong key is a 401 whose message says where keys come from.
        await using (var tcp = new VesselClient(new VesselClientOptions { BaseAddress = new Uri($"http://127.0.0.1:{daemon.Port}"), ApiKey = daemon.ApiKey }))
        {
            await tcp.Sandboxes.ListAsync(cancellationToken: ct);
        }
        await using (var wrong = new VesselClient(new VesselClientOptions { BaseAddress = new Uri($"http://127.0.0.1:{daemon.Port}"), ApiKey = "vk_wrong" }))
        {
            var refusedKey = await Assert.ThrowsAsync<VesselApiException>(() => wrong.Sandboxes.ListAsync(cancellationToken: ct));
            Assert.Equal(HttpStatusCode.Unauthorized, refusedKey.StatusCode);
        }

        Sandbox sandbox = await client.Sandboxes.CreateAsync(new SandboxCreateOptions
        {
            Template = "sdk",
            Timeout = TimeSpan.FromMinutes(10),
            Metadata = new Dictionary<string, string> { ["test"] = "every-method" },
            Env = new Dictionary<string, string> { ["FROM_SANDBOX"] = "yes" },
        }, ct);
        Assert.Equal(SandboxState.Running, sandbox.State);
        Assert.Contains(await client.Sandboxes.ListAsync(new SandboxQuery { State = SandboxState.Running, Metadata = sandbox.Info.Metadata }, ct), s => s.SandboxId == sandbox.SandboxId);
        Assert.DoesNotContain(await client.Sandboxes.ListAsync(new SandboxQuery { Metadata = new Dictionary<string, string> { ["test"] = "other" } }, ct), s => s.SandboxId == sandbox.SandboxId);

        // Foreground: exit code, both streams, env from the sandbox and the command, cwd, stdin.
        CommandResult r = await sandbox.Commands.RunAsync("/bin/sh", ["-c", "cat; echo \" $FROM_SANDBOX $MINE $(pwd)\"; echo oops >&2; exit 3"],
            new CommandOptions { Env = new Dictionary<string, string> { ["MINE"] = "mine" }, Cwd = "/tmp", Stdin = "in"u8.ToArray() }, ct);
        Assert.Equal((3, "in yes mine /tmp\n", "oops\n"), (r.ExitCode, r.Stdout, r.Stderr));
        Assert.Equal("built-by-the-daemon\n", (await sandbox.Commands.RunAsync("cat", ["/etc/sdk-test"], cancellationToken: ct)).Stdout);
        CommandResult slow = await sandbox.Commands.RunAsync("sleep", ["100"], new CommandOptions { Timeout = TimeSpan.FromSeconds(1) }, ct);
        Assert.True(slow.TimedOut, $"exit {slow.ExitCode}");

        // Background: output re-attached, stdin, signal, wait.
        CommandHandle cat = await sandbox.Commands.StartAsync("cat", cancellationToken: ct);
        Assert.Contains(await sandbox.Commands.ListAsync(ct), p => p.Pid == cat.Pid);
        await cat.SendStdinAsync("line one\n", ct);
        await cat.CloseStdinAsync(ct);
        var output = new StringBuilder();
        await foreach (CommandOutput o in cat.ReadOutputAsync(ct))
        {
            output.Append(o.Text);
        }
        Assert.Equal(("line one\n", 0), (output.ToString(), cat.ExitCode!.Value));
        CommandHandle sleeper = await sandbox.Commands.StartAsync("sleep", ["1000"], cancellationToken: ct);
        await sleeper.KillAsync(ct);
        Assert.Equal(137, await sleeper.WaitAsync(ct));

        // Files: streamed both ways, listed, moved, deleted; a missing file is a 404 that is not "sandbox not found".
        byte[] blob = RandomNumberGenerator(3 << 20);
        await sandbox.Files.MakeDirectoryAsync("/root/data/sub", ct);
        await using (var upload = new MemoryStream(blob))
        {
            await sandbox.Files.WriteAsync("/root/data/blob.bin", upload, ct);
        }
        await sandbox.Files.WriteAsync("/root/data/note.txt", "héllo", ct);
        Assert.Equal(blob, await sandbox.Files.ReadAllBytesAsync("/root/data/blob.bin", ct));
        await using (Stream download = await sandbox.Files.OpenReadAsync("/root/data/note.txt", ct))
        using (var reader = new StreamReader(download))
        {
            Assert.Equal("héllo", await reader.ReadToEndAsync(ct));
        }
        var entries = await sandbox.Files.ListAsync("/root/data", cancellationToken: ct);
        Assert.Equal(["blob.bin", "note.txt", "sub"], entries.Select(e => e.Name).Order(StringComparer.Ordinal));
        Assert.True(entries.Single(e => e.Name == "sub").IsDirectory);
        Assert.Equal(blob.Length, (await sandbox.Files.StatAsync("/root/data/blob.bin", ct)).Size);
        await sandbox.Files.MoveAsync("/root/data/note.txt", "/root/data/sub/note.txt", ct);
        await sandbox.Files.DeleteAsync("/root/data/blob.bin", ct);
        var missing = await Assert.ThrowsAsync<VesselApiException>(() => sandbox.Files.ReadAllBytesAsync("/root/data/blob.bin", ct));
        Assert.IsNotType<SandboxNotFoundException>(missing);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);

        // Timeout, pause (exec refused with 409), connect (resumes), files and processes kept.
        DateTimeOffset? before = sandbox.Info.EndAt;
        await sandbox.SetTimeoutAsync(TimeSpan.FromMinutes(12), ct);
        Assert.True(sandbox.Info.EndAt > before, $"{sandbox.Info.EndAt} after {before}");
        CommandHandle survivor = await sandbox.Commands.StartAsync("sleep", ["1000"], cancellationToken: ct);
        await sandbox.PauseAsync(ct);
        Assert.Equal(SandboxState.Paused, (await client.Sandboxes.GetInfoAsync(sandbox.SandboxId, ct)).State);
        var refused = await Assert.ThrowsAsync<VesselApiException>(() => sandbox.Commands.RunAsync("true", cancellationToken: ct));
        Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
        Sandbox again = await client.Sandboxes.ConnectAsync(sandbox.SandboxId, ct);
        Assert.Equal(SandboxState.Running, again.State);
        Assert.Equal("héllo", await again.Files.ReadAllTextAsync("/root/data/sub/note.txt", ct));
        Assert.Contains(await again.Commands.ListAsync(ct), p => p.Pid == survivor.Pid);
        await again.PauseAsync(ct);
        await again.ResumeAsync(ct);
        Assert.Equal("ok\n", (await again.Commands.RunAsync("echo", ["ok"], cancellationToken: ct)).Stdout);

        await again.KillAsync(ct);
        await Assert.ThrowsAsync<SandboxNotFoundException>(() => client.Sandboxes.GetInfoAsync(sandbox.SandboxId, ct));
        await Assert.ThrowsAsync<SandboxNotFoundException>(() => sandbox.Files.ReadAllBytesAsync("/root/data/sub/note.txt", ct));
        await client.Templates.DeleteAsync("sdk", ct);
        Assert.DoesNotContain(await client.Templates.ListAsync(ct), t => t.Name == "sdk");
    }

    [DaemonFact(Timeout = 600_000)]
    public async Task Cancelling_a_foreground_command_mid_stream_stops_it_in_the_guest()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        await using VesselClient client = Client();
        Sandbox sandbox = await client.Sandboxes.CreateAsync(new SandboxCreateOptions { Template = Template }, cts.Token);
        try
        {
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
            Task<CommandResult> run = sandbox.Commands.RunAsync("/bin/sh", ["-c", "echo started; exec sleep 1000"],
                new CommandOptions { OnStdout = _ => stop.Cancel() }, stop.Token);

            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);

            // The daemon kills a foreground command whose client went away.
            for (int i = 0; i < 100 && (await sandbox.Commands.ListAsync(cts.Token)).Count > 0; i++)
            {
                await Task.Delay(100, cts.Token);
            }
            Assert.Empty(await sandbox.Commands.ListAsync(cts.Token));
            Assert.Equal("", (await sandbox.Commands.RunAsync("/bin/sh", ["-c", "ps 2>/dev/null | grep 'sleep 1000' | grep -v grep || true"], cancellationToken: cts.Token)).Stdout);
        }
        finally
        {
            await sandbox.KillAsync(CancellationToken.None);
        }
    }

    [DaemonFact(Timeout = 600_000)]
    public async Task The_cli_creates_execs_copies_pauses_resumes_and_kills_through_the_daemon()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        CancellationToken ct = cts.Token;
        string home = daemon.Home;
        ProcessResult created = await VesselCli.RunAsync(ct, "sandbox", "create", Template, "--home", home, "--meta", "via=cli", "--timeout", "600");
        string id = created.StandardOutput.Trim();
        Assert.StartsWith("sbx-", id, StringComparison.Ordinal);

        ProcessResult exec = await VesselCli.RunAsync(ct, "sandbox", "exec", id, "--home", home, "-w", "/tmp", "--", "/bin/sh", "-c", "pwd; echo err >&2; exit 7");
        Assert.Equal((7, "/tmp\n"), (exec.ExitCode, exec.StandardOutput));
        Assert.Contains("err", exec.StandardError, StringComparison.Ordinal);

        string local = Path.Combine(home, "cli-upload.txt");
        await File.WriteAllTextAsync(local, "from the host\n", ct);
        Assert.Equal(0, (await VesselCli.RunAsync(ct, "sandbox", "cp", local, id + ":/root/up.txt", "--home", home)).ExitCode);
        string back = Path.Combine(home, "cli-download.txt");
        Assert.Equal(0, (await VesselCli.RunAsync(ct, "sandbox", "cp", id + ":/root/up.txt", back, "--home", home)).ExitCode);
        Assert.Equal("from the host\n", await File.ReadAllTextAsync(back, ct));

        ProcessResult background = await VesselCli.RunAsync(ct, "sandbox", "exec", id, "--home", home, "--background", "--", "/bin/sh", "-c", "echo bg-out; exit 5");
        int pid = int.Parse(background.StandardOutput.Trim(), System.Globalization.CultureInfo.InvariantCulture);
        ProcessResult logs = await VesselCli.RunAsync(ct, "sandbox", "logs", id, pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "--home", home);
        Assert.Equal((5, "bg-out\n"), (logs.ExitCode, logs.StandardOutput));

        Assert.Contains(id + " paused", (await VesselCli.RunAsync(ct, "sandbox", "pause", id, "--home", home)).StandardOutput, StringComparison.Ordinal);
        ProcessResult listed = await VesselCli.RunAsync(ct, "sandbox", "ls", "--home", home, "--state", "paused");
        Assert.Contains(id, listed.StandardOutput, StringComparison.Ordinal);
        ProcessResult refused = await VesselCli.RunAsync(ct, "sandbox", "exec", id, "--home", home, "--", "true");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("(HTTP 409)", refused.StandardError, StringComparison.Ordinal);
        Assert.Contains(id + " running", (await VesselCli.RunAsync(ct, "sandbox", "resume", id, "--home", home)).StandardOutput, StringComparison.Ordinal);
        Assert.Contains(id + " killed", (await VesselCli.RunAsync(ct, "sandbox", "kill", id, "--home", home)).StandardOutput, StringComparison.Ordinal);
        ProcessResult gone = await VesselCli.RunAsync(ct, "sandbox", "exec", id, "--home", home, "--", "true");
        Assert.Equal(1, gone.ExitCode);
        Assert.Contains("(HTTP 404)", gone.StandardError, StringComparison.Ordinal);
    }

    [DaemonFact(Timeout = 600_000)]
    public async Task The_code_interpreter_sample_runs_generated_code_and_collects_its_file()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        string sample = Path.Combine(AppContext.BaseDirectory, "CodeInterpreter.dll");

        ProcessResult run = await ExternalProcess.RunAsync("dotnet", [sample, "--socket", daemon.Socket, "--template", Template], cts.Token, timeout: TimeSpan.FromMinutes(8));

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.StandardOutput}\n{run.StandardError}");
        Assert.Contains("sum of 1..100 = 5050", run.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("100,5050", run.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("killed by its 2 s timeout", run.StandardOutput, StringComparison.Ordinal);
        await using VesselClient client = Client();
        Assert.Empty(await client.Sandboxes.ListAsync(new SandboxQuery { Metadata = new Dictionary<string, string> { ["purpose"] = "code-interpreter-sample" } }, cts.Token));
    }

    [DaemonFact(Timeout = 600_000)]
    public async Task A_daemon_killed_mid_stream_is_a_clear_exception_without_a_hang_and_a_new_daemon_serves_again()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        await using VesselClient client = Client();
        Sandbox sandbox = await client.Sandboxes.CreateAsync(new SandboxCreateOptions { Template = Template }, cts.Token);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task<CommandResult> run = sandbox.Commands.RunAsync("/bin/sh", ["-c", "while :; do echo tick; sleep 1; done"],
            new CommandOptions { OnStdout = _ => started.TrySetResult() }, cts.Token);
        await started.Task.WaitAsync(cts.Token);

        await daemon.StopAsync(kill9: true);

        var e = await Assert.ThrowsAsync<VesselConnectionException>(() => run.WaitAsync(TimeSpan.FromSeconds(30), cts.Token));
        Assert.Contains("Did the daemon stop?", e.Message, StringComparison.Ordinal);
        var down = await Assert.ThrowsAsync<VesselConnectionException>(() => client.Sandboxes.ListAsync(cancellationToken: cts.Token));
        Assert.Contains("vessel serve", down.Message, StringComparison.Ordinal);

        // A new daemon on the same home cleans what the dead one ran and serves the template again.
        await daemon.StartAsync(cts.Token);
        await WaitUntilServingAsync(client, cts.Token);
        await Assert.ThrowsAsync<SandboxNotFoundException>(() => client.Sandboxes.GetInfoAsync(sandbox.SandboxId, cts.Token));
        Assert.Empty(daemon.Qemus());
        Sandbox fresh = await client.Sandboxes.CreateAsync(new SandboxCreateOptions { Template = Template }, cts.Token);
        Assert.Equal("ok\n", (await fresh.Commands.RunAsync("echo", ["ok"], cancellationToken: cts.Token)).Stdout);
        await fresh.KillAsync(cts.Token);
    }

    [Fact(Timeout = 120_000)]
    public async Task The_cli_without_a_daemon_says_to_start_one_and_fails()
    {
        using var home = TempDirectory.Create("vsd-none-", "/tmp");

        ProcessResult r = await VesselCli.RunAsync(CancellationToken.None, "sandbox", "ls", "--home", home.Path);

        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"cannot reach the Vessel daemon at unix:{home.Path}/vessel.sock", r.StandardError, StringComparison.Ordinal);
        Assert.Contains("Start it with 'vessel serve'", r.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// The fixture's start returns when its log says "serving on", which after a restart is the
    /// old daemon's line: poll the socket until the new one answers.
    /// </summary>
    private static async Task WaitUntilServingAsync(VesselClient client, CancellationToken cancellationToken)
    {
        for (int i = 0; ; i++)
        {
            try
            {
                await client.Sandboxes.ListAsync(cancellationToken: cancellationToken);
                return;
            }
            catch (VesselConnectionException) when (i < 600)
            {
                await Task.Delay(200, cancellationToken);
            }
        }
    }

    private static byte[] RandomNumberGenerator(int length)
    {
        byte[] data = new byte[length];
        new Random(14).NextBytes(data);
        return data;
    }
}
