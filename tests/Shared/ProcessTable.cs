namespace Vessel.Testing;

/// <summary>
/// The host's process table read from /proc: the oracle the fixtures use to assert that no
/// process (a QEMU, a shim, a server) outlives its owner. A process that exits while it is read,
/// or hides its files, is skipped: it is not one of ours.
/// </summary>
public static class ProcessTable
{
    /// <summary>Kills <paramref name="process"/> and its children, waits for it and disposes it (a server fixture's cleanup when its start failed).</summary>
    public static async Task KillTreeAsync(Process process)
    {
        process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync(CancellationToken.None);
        process.Dispose();
    }

    /// <summary>Live processes whose command line (arguments joined by spaces) satisfies <paramref name="match"/>.</summary>
    public static IReadOnlyList<int> Matching(Func<string, bool> match)
        => Where(dir => match(File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ')));

    /// <summary>QEMU processes whose command line names <paramref name="text"/> (a state directory or home).</summary>
    public static IReadOnlyList<int> QemusNaming(string text)
        => Matching(c => c.Contains("qemu-system", StringComparison.Ordinal) && c.Contains(text, StringComparison.Ordinal));

    /// <summary>Live (not zombie) processes whose environment holds <paramref name="variable"/>=<paramref name="value"/>.</summary>
    public static IReadOnlyList<int> WithEnvironment(string variable, string value)
        => Where(dir =>
        {
            string stat = File.ReadAllText(Path.Combine(dir, "stat"));
            bool zombie = stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
            return !zombie && File.ReadAllText(Path.Combine(dir, "environ")).Contains($"{variable}={value}", StringComparison.Ordinal);
        });

    private static List<int> Where(Func<string, bool> predicate)
    {
        var found = new List<int>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid))
            {
                continue;
            }
            try
            {
                if (predicate(dir))
                {
                    found.Add(pid);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The process exited or hides its files: not ours.
            }
        }
        return found;
    }
}
