using Vessel.Agent.Protocol;

namespace Vessel.Tests.Agent;

public sealed class AgentOnHostTests(AgentOnHostFixture fixture) : IClassFixture<AgentOnHostFixture>
{
    private static async Task<(ExitStatus Status, string Stdout, string Stderr)> RunAsync(AgentClient client, ExecRequest request, string? stdin = null)
    {
        using ExecSession session = await client.StartAsync(request with { Stdin = stdin is not null }, CancellationToken.None);
        if (stdin is not null)
        {
            await session.WriteStdinAsync(Encoding.UTF8.GetBytes(stdin), CancellationToken.None);
            await session.CloseStdinAsync(CancellationToken.None);
        }
        using var stdout = new MemoryStream();
        using var stderr = new MemoryStream();
        ExitStatus status = await session.WaitAsync(stdout, stderr, CancellationToken.None);
        return (status, Encoding.UTF8.GetString(stdout.ToArray()), Encoding.UTF8.GetString(stderr.ToArray()));
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task Exec_runs_chrooted_with_cwd_env_and_exit_code()
    {
        await using AgentClient client = await fixture.ConnectAsync();
        var (status, stdout, _) = await RunAsync(client, new ExecRequest(["sh", "-c", "cat /etc/vessel-test-release >/dev/null && pwd && echo $GREETING && exit 7"])
        {
            WorkingDirectory = "/tmp",
            Environment = ["GREETING=hello"],
        });
        Assert.Equal(7, status.ExitCode);
        Assert.Equal("/tmp\nhello\n", stdout);
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task Exec_switches_user_from_the_rootfs_passwd()
    {
        await using AgentClient client = await fixture.ConnectAsync();
        var (status, stdout, _) = await RunAsync(client, new ExecRequest(["id"]) { User = "nobody" });
        Assert.Equal(0, status.ExitCode);
        Assert.StartsWith("uid=65534(nobody) gid=65534(nobody)", stdout, StringComparison.Ordinal);
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task Exec_passes_stdin_and_separates_stderr()
    {
        await using AgentClient client = await fixture.ConnectAsync();
        var (status, stdout, stderr) = await RunAsync(client, new ExecRequest(["sh", "-c", "tr a-z A-Z; echo oops >&2"]), "shout\n");
        Assert.Equal(0, status.ExitCode);
        Assert.Equal("SHOUT\n", stdout);
        Assert.Equal("oops\n", stderr);
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task Exec_timeout_kills_the_process_tree()
    {
        await using AgentClient client = await fixture.ConnectAsync();
        var (status, _, _) = await RunAsync(client, new ExecRequest(["sh", "-c", "sleep 30; echo never"]) { Timeout = TimeSpan.FromMilliseconds(300) });
        Assert.True(status.TimedOut);
        Assert.Equal(9, status.Signal);
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task Unknown_program_is_reported_as_not_found()
    {
        await using AgentClient client = await fixture.ConnectAsync();
        AgentException e = await Assert.ThrowsAsync<AgentException>(() => client.StartAsync(new ExecRequest(["no-such-program"]), CancellationToken.None));
        Assert.Equal(2, e.Code);
        Assert.Contains("no-such-program", e.Message, StringComparison.Ordinal);
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task Wrong_token_is_refused()
    {
        AgentException e = await Assert.ThrowsAsync<AgentException>(() => fixture.ConnectAsync("wrong"));
        Assert.Contains("token", e.Message, StringComparison.Ordinal);
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task Process_survives_a_reconnect_and_reattaches()
    {
        int pid;
        await using (AgentClient first = await fixture.ConnectAsync())
        {
            ExecSession s = await first.StartAsync(new ExecRequest(["sh", "-c", "echo before; sleep 1; echo after; exit 3"]), CancellationToken.None);
            pid = s.Pid;
        }
        await using AgentClient second = await fixture.ConnectAsync();
        using ExecSession again = await second.AttachAsync(pid, CancellationToken.None);
        using var stdout = new MemoryStream();
        ExitStatus status = await again.WaitAsync(stdout, null, CancellationToken.None);
        Assert.Equal(3, status.ExitCode);
        Assert.EndsWith("after\n", Encoding.UTF8.GetString(stdout.ToArray()), StringComparison.Ordinal);
    }

    [RequiresFact("root", "busybox-image", Timeout = 120_000)]
    public async Task A_detach_and_reattach_loses_no_output_of_a_process_writing_all_the_time()
    {
        // A writer that barely pauses: detaches land while output is in flight. Each detach is
        // confirmed by the agent, then the host re-attaches on a new connection (as after a
        // pause); the lines must come out complete, in order, without gaps or repeats. The writer
        // runs until the test has detached a few times (a stop file in the agent's root), so a
        // slow host cannot let it finish before the first detach.
        const int MinLines = 500;
        string stopName = $"tmp/stop-{Guid.NewGuid():N}";
        string stopPath = Path.Combine(fixture.Root, stopName);
        string script = $"i=1; while [ $i -le {MinLines} ] || [ ! -e /{stopName} ]; do echo line $i; if [ $((i % 50)) = 0 ]; then sleep 0.01; fi; i=$((i+1)); done; exit 4";
        AgentClient client = await fixture.ConnectAsync();
        using var stdout = new MemoryStream();
        int detaches = 0;
        try
        {
            Assert.True(client.CanDetach);
            ExecSession session = await client.StartAsync(new ExecRequest(["sh", "-c", script]), CancellationToken.None);
            int pid = session.Pid;
            while (true)
            {
                Task<ExitStatus?> reading = session.WaitOrDetachedAsync(stdout, null, CancellationToken.None);
                await Task.WhenAny(reading, Task.Delay(15));
                if (!reading.IsCompleted)
                {
                    await session.DetachAsync(CancellationToken.None);
                }
                ExitStatus? status = await reading;
                session.Dispose();
                if (status is not null)
                {
                    Assert.Equal(4, status.ExitCode);
                    break;
                }
                if (++detaches == 5)
                {
                    Directory.CreateDirectory(Path.GetDirectoryName(stopPath)!);
                    await File.WriteAllTextAsync(stopPath, "");
                }
                // One host connection at a time: the next attach comes on a new one, as after a resume.
                await client.DisposeAsync();
                client = await fixture.ConnectAsync();
                session = await client.AttachAsync(pid, CancellationToken.None);
            }
        }
        finally
        {
            await client.DisposeAsync();
            File.Delete(stopPath);
        }
        string[] lines = Encoding.UTF8.GetString(stdout.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(detaches >= 5, $"only {detaches} detaches happened: the test did not test anything");
        Assert.True(lines.Length >= MinLines, $"only {lines.Length} lines came out, the writer prints at least {MinLines}");
        Assert.Equal(Enumerable.Range(1, lines.Length).Select(i => $"line {i}"), lines);
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task Files_round_trip_list_stat_rename_remove()
    {
        await using AgentClient client = await fixture.ConnectAsync();
        byte[] data = new byte[3 * 1024 * 1024 + 17];
        new Random(42).NextBytes(data);
        await client.MkdirAsync("/work/a/b", 0x1ED, parents: true, CancellationToken.None);
        await client.WriteFileAsync("/work/a/b/data.bin", new MemoryStream(data), 0x1A4, CancellationToken.None);
        FileEntry stat = await client.StatAsync("/work/a/b/data.bin", CancellationToken.None);
        Assert.Equal((ulong)data.Length, stat.Size);
        Assert.Equal(FileKind.File, stat.Kind);
        Assert.Equal(0x1A4u, stat.Mode);
        await client.RenameAsync("/work/a/b/data.bin", "/work/a/data2.bin", CancellationToken.None);
        IReadOnlyList<FileEntry> list = await client.ListAsync("/work/a", CancellationToken.None);
        Assert.Equal(["b", "data2.bin"], list.Select(e => e.Name));
        using var back = new MemoryStream();
        await client.ReadFileAsync("/work/a/data2.bin", back, CancellationToken.None);
        Assert.Equal(data, back.ToArray());
        await client.RemoveAsync("/work", recursive: true, CancellationToken.None);
        await Assert.ThrowsAsync<AgentException>(() => client.StatAsync("/work", CancellationToken.None));
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task Paths_cannot_escape_the_root_through_dotdot_or_symlinks()
    {
        await using AgentClient client = await fixture.ConnectAsync();
        string marker = Path.Combine(fixture.Work!.Path, "outside.txt");
        await File.WriteAllTextAsync(marker, "host secret");
        File.CreateSymbolicLink(Path.Combine(fixture.Root, "escape"), fixture.Work.Path);

        // "/escape" points at the host directory holding outside.txt, "../" climbs: both resolve inside the root.
        await Assert.ThrowsAsync<AgentException>(() => client.ReadFileAsync("/escape/outside.txt", Stream.Null, CancellationToken.None));
        await Assert.ThrowsAsync<AgentException>(() => client.ReadFileAsync("/../outside.txt", Stream.Null, CancellationToken.None));
        await client.WriteFileAsync("/escape/outside.txt", new MemoryStream("x"u8.ToArray()), 0x1A4, CancellationToken.None).ContinueWith(_ => { });
        Assert.Equal("host secret", await File.ReadAllTextAsync(marker));
        await client.RemoveAsync("/escape", recursive: true, CancellationToken.None);
        Assert.True(File.Exists(marker));
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task Several_processes_run_at_once()
    {
        await using AgentClient client = await fixture.ConnectAsync();
        var started = DateTime.UtcNow;
        var runs = Enumerable.Range(0, 3).Select(i => RunAsync(client, new ExecRequest(["sh", "-c", $"sleep 1; echo {i}"]))).ToArray();
        var results = await Task.WhenAll(runs);
        Assert.Equal(["0\n", "1\n", "2\n"], results.Select(r => r.Stdout));
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(2.8), "the three 1-second sleeps should overlap");
    }
}
