using System.Diagnostics;
using System.Globalization;

namespace Vessel.Tests.Common;

public sealed class ChildProcessTests
{
    [Fact]
    public async Task Output_keeps_the_start_of_stderr_up_to_its_bound_and_drops_stdout()
    {
        await using var child = new ChildProcess(Start("printf out; printf 0123456789 >&2"), maxOutputChars: 4);
        await child.Exited.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("0123", await child.FinalOutputAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Stdout_joins_stderr_when_kept()
    {
        await using var child = new ChildProcess(Start("printf out; printf err >&2"), keepStdout: true);
        await child.Exited.WaitAsync(TimeSpan.FromSeconds(30));
        // Two pipes, two pumps: the order in which they are read is not the order of the writes.
        string output = await child.FinalOutputAsync(TimeSpan.FromSeconds(10));
        Assert.True(output is "outerr" or "errout", output);
    }

    [Fact]
    public async Task Disposal_kills_the_process_and_its_children_and_waits_for_the_exit()
    {
        var child = new ChildProcess(Start("sleep 600 & echo $! >&2; wait"));
        int grandchild = 0;
        for (int i = 0; i < 3000 && !int.TryParse(child.Output.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out grandchild); i++)
        {
            await Task.Delay(10);
        }
        Assert.True(grandchild > 0, "the shell did not report its child");
        int pid = child.Pid;
        await child.DisposeAsync();
        Assert.True(child.Exited.IsCompleted);
        Assert.False(IsRunning(pid), $"pid {pid} still runs");
        for (int i = 0; i < 3000 && IsRunning(grandchild); i++)
        {
            await Task.Delay(10);
        }
        Assert.False(IsRunning(grandchild), $"its child {grandchild} still runs");
    }

    private static Process Start(string script)
    {
        var psi = new ProcessStartInfo("/bin/sh")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        return Process.Start(psi)!;
    }

    /// <summary>Whether the process exists and is not a zombie (state Z in /proc/PID/stat).</summary>
    private static bool IsRunning(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            return stat[(stat.LastIndexOf(')') + 2)] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }
}
