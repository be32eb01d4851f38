using System.Text.RegularExpressions;
using Vessel.Common;
using Vessel.Testing;
using Xunit;

namespace Vessel.IntegrationTests.Shim;

/// <summary>
/// <c>ctr run -t</c> and <c>ctr task exec -t</c> through the shim: ctr needs a terminal of its own,
/// so util-linux <c>script</c> gives it one, sized with stty first; ctr passes that size on
/// (ResizePty) and the process in the VM sees it on its pseudo-terminal. Also the OCI spec's hostname.
/// </summary>
[Collection(ShimCollection.Name)]
public sealed partial class ShimTerminalTests
{
    private const int Timeout = 600_000;

    private readonly ShimFixture _ctrd;

    public ShimTerminalTests(ShimFixture fixture)
    {
        _ctrd = fixture;
    }

    [RequiresFact("root", "containerd", "ctr", "qemu-system-x86_64", "busybox-image", "apt-get", "dpkg-deb", "modinfo", "setsid", "tar", "script", Timeout = Timeout)]
    public async Task Ctr_run_t_gives_the_container_a_pty_of_ctrs_terminal_size_and_its_exit_code()
    {
        using var cts = new CancellationTokenSource(Timeout);
        ProcessResult run = await CtrOnTerminalAsync(33, 101, cts.Token, "run", "-t", "--rm", "--runtime", ShimFixture.Runtime, ShimFixture.Image, "tt1",
            "sh", "-c", "tty; stty size; [ -t 2 ] && echo stderr-is-tty; exit 5");
        Assert.True(run.ExitCode == 5, $"ctr run -t exited with {run.ExitCode}: {run.StandardOutput}{run.StandardError}");
        Assert.Matches(PtyLine(), run.StandardOutput);
        Assert.Contains("33 101\r\n", run.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("stderr-is-tty\r\n", run.StandardOutput, StringComparison.Ordinal);
        await _ctrd.AssertNothingLeftAsync("tt1", cts.Token);
    }

    [RequiresFact("root", "containerd", "ctr", "qemu-system-x86_64", "busybox-image", "apt-get", "dpkg-deb", "modinfo", "setsid", "tar", "script", Timeout = Timeout)]
    public async Task Ctr_task_exec_t_runs_on_its_own_pty_beside_a_detached_task()
    {
        using var cts = new CancellationTokenSource(Timeout);
        (await _ctrd.CtrAsync(cts.Token, "run", "-d", "--runtime", ShimFixture.Runtime, ShimFixture.Image, "tt2", "sleep", "1d")).EnsureSuccess();
        try
        {
            ProcessResult exec = await CtrOnTerminalAsync(21, 77, cts.Token, "task", "exec", "-t", "--exec-id", "e1", "tt2", "sh", "-c", "tty; stty size; exit 4");
            Assert.True(exec.ExitCode == 4, $"ctr task exec -t exited with {exec.ExitCode}: {exec.StandardOutput}{exec.StandardError}");
            Assert.Matches(PtyLine(), exec.StandardOutput);
            Assert.Contains("21 77\r\n", exec.StandardOutput, StringComparison.Ordinal);
            (await _ctrd.CtrAsync(cts.Token, "task", "kill", "-s", "SIGKILL", "tt2")).EnsureSuccess();
            for (int i = 0; i < 100 && !(await _ctrd.CtrAsync(cts.Token, "task", "ls")).StandardOutput.Contains("STOPPED", StringComparison.Ordinal); i++)
            {
                await Task.Delay(100, cts.Token);
            }
        }
        finally
        {
            await _ctrd.CtrAsync(CancellationToken.None, "task", "rm", "-f", "tt2");
            await _ctrd.CtrAsync(CancellationToken.None, "containers", "rm", "tt2");
        }
        await _ctrd.AssertNothingLeftAsync("tt2", cts.Token);
    }

    [RequiresFact("root", "containerd", "ctr", "qemu-system-x86_64", "busybox-image", "apt-get", "dpkg-deb", "modinfo", "setsid", "tar", Timeout = Timeout)]
    public async Task The_spec_hostname_is_the_guests_hostname()
    {
        // ctr 1.6 has no --hostname; --net-host writes the host's name into the spec's hostname.
        using var cts = new CancellationTokenSource(Timeout);
        string expected = (await ExternalProcess.RunAsync("hostname", [], cts.Token)).EnsureSuccess().StandardOutput.Trim();
        Assert.NotEqual("th1", expected);
        ProcessResult run = await _ctrd.CtrAsync(cts.Token, "run", "--rm", "--net-host", "--runtime", ShimFixture.Runtime, ShimFixture.Image, "th1",
            "sh", "-c", "hostname; cat /etc/hostname");
        Assert.True(run.ExitCode == 0, $"ctr run exited with {run.ExitCode}: {run.StandardOutput}{run.StandardError}");
        Assert.Equal($"{expected}\n{expected}\n", run.StandardOutput);
        await _ctrd.AssertNothingLeftAsync("th1", cts.Token);
    }

    /// <summary>ctr on a terminal of <paramref name="rows"/> x <paramref name="columns"/> (script's pty, sized by stty); script exits with ctr's code.</summary>
    private Task<ProcessResult> CtrOnTerminalAsync(int rows, int columns, CancellationToken cancellationToken, params string[] args)
    {
        string ctr = string.Join(' ', new[] { "ctr", "-a", _ctrd.Socket, "-n", ShimFixture.Namespace }.Concat(args).Select(Quote));
        return ExternalProcess.RunAsync("script", ["-qec", $"stty rows {rows} cols {columns}; exec {ctr}", "/dev/null"], cancellationToken, standardInput: string.Empty, timeout: TimeSpan.FromMinutes(5));
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    [GeneratedRegex(@"(^|\n)/dev/pts/[0-9]+\r\n")]
    private static partial Regex PtyLine();
}
