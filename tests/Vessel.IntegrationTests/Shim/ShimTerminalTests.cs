using System.Text.RegularExpressions;

namespace Vessel.IntegrationTests.Shim;

/// <summary>
/// <c>ctr run -t</c> and <c>ctr task exec -t</c> through the shim: ctr needs a terminal of its own,
/// so util-linux <c>script</c> gives it one, sized with stty first; ctr passes that size on
/// (ResizePty) and the process in the VM sees it on its pseudo-terminal. Also the OCI spec's hostname.
/// </summary>
[Collection(ShimCollection.Name)]
public sealed partial class ShimTerminalTests(ShimFixture ctrd) : TimedTestBase(ShimFixture.TestTimeout)
{
    /// <summary>
    /// ctr sends the terminal's size (ResizePty) just after Start, as it does for runc: until it
    /// arrives the guest's terminal is 0 x 0 and busybox stty fails on it.
    /// </summary>
    private const string WaitForSize = "until [ -n \"$(stty size 2>/dev/null)\" ]; do sleep 0.1; done; ";

    [ShimFact("script")]
    public async Task Ctr_run_t_gives_the_container_a_pty_of_ctrs_terminal_size_and_its_exit_code()
    {
        ProcessResult run = await CtrOnTerminalAsync(33, 101, Deadline, "run", "-t", "--rm", "--runtime", ShimFixture.Runtime, ShimFixture.Image, "tt1",
            "sh", "-c", WaitForSize + "tty; stty size; [ -t 2 ] && echo stderr-is-tty; exit 5");
        ShimFixture.AssertExit(run, 5);
        // ctr's own terminal (script's) adds a second \r to each of the guest terminal's \r\n.
        string[] lines = Lines(run.StandardOutput);
        Assert.True(lines.Length == 3 && PtyLine().IsMatch(lines[0]) && lines[1] == "33 101" && lines[2] == "stderr-is-tty", "output: " + run.StandardOutput);
        await ctrd.AssertNothingLeftAsync("tt1", Deadline);
    }

    [ShimFact("script")]
    public async Task Ctr_task_exec_t_runs_on_its_own_pty_beside_a_detached_task()
    {
        await ctrd.WithDetachedTaskAsync("tt2", [ShimFixture.Image, "tt2", "sleep", "1d"], async () =>
        {
            ProcessResult exec = await CtrOnTerminalAsync(21, 77, Deadline, "task", "exec", "-t", "--exec-id", "e1", "tt2", "sh", "-c", WaitForSize + "tty; stty size; exit 4");
            ShimFixture.AssertExit(exec, 4);
            string[] lines = Lines(exec.StandardOutput);
            Assert.True(lines.Length == 2 && PtyLine().IsMatch(lines[0]) && lines[1] == "21 77", "output: " + exec.StandardOutput);
            await ctrd.KillAndWaitStoppedAsync("tt2", Deadline);
        }, Deadline);
    }

    [ShimFact]
    public async Task The_spec_hostname_is_the_guests_and_a_spec_root_path_without_mounts_is_the_rootfs()
    {
        // ctr 1.6 has no --hostname: `ctr run --config` takes a whole spec (ctr's default, edited),
        // whose root is a tree on the host that containerd passes no mounts for (runc's rule).
        string tree = ctrd.CreateDirectory("th1-rootfs");
        (await ExternalProcess.RunAsync("tar", ["-xzf", TestImages.BusyboxTarball, "-C", tree], Deadline)).EnsureSuccess();
        var spec = JsonNode.Parse((await ctrd.CtrAsync(Deadline, "oci", "spec")).EnsureSuccess().StandardOutput)!;
        spec["hostname"] = "spec-host";
        spec["root"] = new JsonObject { ["path"] = tree };
        spec["process"]!["args"] = new JsonArray("sh", "-c", "hostname; cat /etc/hostname; cat /etc/vessel-test-release");
        string specPath = Path.Combine(ctrd.Root, "th1-spec.json");
        await File.WriteAllTextAsync(specPath, spec.ToJsonString(), Deadline);
        ProcessResult run = await ctrd.RunAndRemoveAsync("th1", ["--config", specPath, "th1"], Deadline);
        ShimFixture.AssertExit(run, 0);
        Assert.Equal($"spec-host\nspec-host\n{TestImages.BusyboxRelease}", run.StandardOutput);
        await ctrd.AssertNothingLeftAsync("th1", Deadline);
    }

    /// <summary>ctr on a terminal of <paramref name="rows"/> x <paramref name="columns"/> (script's pty, sized by stty); script exits with ctr's code.</summary>
    private Task<ProcessResult> CtrOnTerminalAsync(int rows, int columns, CancellationToken cancellationToken, params string[] args)
    {
        string ctr = string.Join(' ', new[] { "ctr", "-a", ctrd.Socket, "-n", ShimFixture.Namespace }.Concat(args).Select(Quote));
        return ExternalProcess.RunAsync("script", ["-qec", $"stty rows {rows} cols {columns}; exec {ctr}", "/dev/null"], cancellationToken, standardInput: string.Empty, timeout: TimeSpan.FromMinutes(5));
    }

    /// <summary>The output's lines, each ended by the terminal's \r\n; a NUL or two echoed from the closed input (shown ^@) is dropped.</summary>
    private static string[] Lines(string output) => output.Replace("^@", string.Empty, StringComparison.Ordinal)
        .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    [GeneratedRegex(@"^/dev/pts/[0-9]+$")]
    private static partial Regex PtyLine();
}
