using Vessel.Agent.Protocol;

namespace Vessel.Tests.Agent;

/// <summary>ExecTerminal on the real agent run on the host: a process on a pseudo-terminal, its size and its resize.</summary>
public sealed class AgentTerminalTests(AgentOnHostFixture fixture) : IClassFixture<AgentOnHostFixture>
{
    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task A_terminal_exec_has_a_tty_on_all_three_fds_of_the_size_asked_and_a_resize_reaches_it()
    {
        await using AgentClient client = await fixture.ConnectAsync();
        using ExecSession session = await client.StartAsync(
            new ExecRequest(["sh", "-c", "for fd in 0 1 2; do [ -t $fd ] && echo tty$fd; done; stty size; echo err >&2; read line; stty size; echo \"got $line\"; exit 6"])
            {
                Terminal = new TerminalSize(30, 100),
            },
            CancellationToken.None);
        using var output = new WatchedOutput();
        Task<ExitStatus> exit = session.WaitAsync(output, null, CancellationToken.None);

        await output.WaitForAsync("30 100\r\nerr\r\n", exit);
        await session.ResizeAsync(new TerminalSize(40, 120), CancellationToken.None);
        await session.WriteStdinAsync("go\n"u8.ToArray(), CancellationToken.None);
        ExitStatus status = await exit;

        string text = output.Text;
        Assert.True(status.ExitCode == 6, $"exit {status.ExitCode}: {text}");
        // A terminal: \r\n line ends, the input echoed, stderr in the same output.
        Assert.Contains("tty0\r\ntty1\r\ntty2\r\n30 100\r\nerr\r\n", text, StringComparison.Ordinal);
        Assert.Contains("go\r\n40 120\r\ngot go\r\n", text, StringComparison.Ordinal);
    }

    [RequiresFact("root", "busybox-image", Timeout = 60_000)]
    public async Task A_terminal_exec_of_an_unknown_program_says_so_on_the_terminal_and_exits_127()
    {
        await using AgentClient client = await fixture.ConnectAsync();
        using ExecSession session = await client.StartAsync(new ExecRequest(["no-such-program"]) { Terminal = new TerminalSize(24, 80) }, CancellationToken.None);
        using var output = new WatchedOutput();
        ExitStatus status = await session.WaitAsync(output, null, CancellationToken.None);
        Assert.Equal(127, status.ExitCode);
        Assert.Contains("no-such-program: not found in PATH", output.Text, StringComparison.Ordinal);
    }

    /// <summary>Collects output and lets a test wait until a text appeared in it.</summary>
    private sealed class WatchedOutput : MemoryStream
    {
        private readonly SemaphoreSlim _changed = new(0);
        private readonly object _gate = new();

        public string Text
        {
            get
            {
                lock (_gate)
                {
                    return Encoding.UTF8.GetString(ToArray());
                }
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            lock (_gate)
            {
                Write(buffer, offset, count);
            }
            _changed.Release();
            return Task.CompletedTask;
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            lock (_gate)
            {
                Write(buffer.Span);
            }
            _changed.Release();
            return ValueTask.CompletedTask;
        }

        public async Task WaitForAsync(string text, Task ended)
        {
            while (!Text.Contains(text, StringComparison.Ordinal))
            {
                Task changed = _changed.WaitAsync(TimeSpan.FromSeconds(20));
                if (await Task.WhenAny(changed, ended) == ended)
                {
                    Assert.Fail($"the process ended before printing '{text}': {Text}");
                }
                Assert.True(await (Task<bool>)changed, $"no '{text}' after 20 s: {Text}");
            }
        }
    }
}
