namespace Vessel.IntegrationTests.Sandboxes;

/// <summary>Shell scripts in a sandbox's guest as the VM tests run them (<c>using static</c>), stdout and stderr together.</summary>
internal static class SandboxShell
{
    /// <summary>Runs <c>/bin/sh -c</c> <paramref name="script"/> (as <paramref name="user"/>, in <paramref name="cwd"/> when given): its exit code and its output.</summary>
    public static async Task<(int Code, string Output)> ExecAsync(Sandbox sandbox, string script, string? user = null, string? cwd = null)
    {
        using var output = new MemoryStream();
        ExitStatus status = await sandbox.ExecAsync(new ExecRequest(["/bin/sh", "-c", script]) { User = user, WorkingDirectory = cwd }, null, output, output, CancellationToken.None);
        return (status.ExitCode, Encoding.UTF8.GetString(output.ToArray()));
    }

    /// <summary>Runs <paramref name="script"/>, asserts that it exited 0 (quoting the script and its output) and returns its output.</summary>
    public static async Task<string> OutputAsync(Sandbox sandbox, string script)
    {
        (int code, string output) = await ExecAsync(sandbox, script);
        Assert.True(code == 0, $"'{script}' exited with {code}: {output}");
        return output;
    }
}
