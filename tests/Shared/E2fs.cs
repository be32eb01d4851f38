namespace Vessel.Testing;

/// <summary>e2fsprogs as the oracle for images.</summary>
public static class E2fs
{
    /// <summary>Runs <c>e2fsck -fn</c>; returns its output when it found anything.</summary>
    public static async Task<string?> CheckAsync(string image)
    {
        var r = await ExternalProcess.RunAsync("e2fsck", ["-fn", image], CancellationToken.None, timeout: TimeSpan.FromMinutes(5));
        return r.ExitCode == 0 ? null : $"e2fsck exit {r.ExitCode}:\n{r.StandardOutput}\n{r.StandardError}";
    }

    public static async Task<string> DebugfsAsync(string image, string request)
    {
        var r = await ExternalProcess.RunAsync("debugfs", ["-R", request, image], CancellationToken.None, timeout: TimeSpan.FromMinutes(5));
        return r.StandardOutput;
    }

    /// <summary>Reads a file's bytes out of an image with debugfs (no mount).</summary>
    public static async Task<byte[]> ReadFileAsync(string image, string path)
    {
        using var dir = TempDirectory.Create("vessel-debugfs-");
        string dest = dir.Combine("out");
        await ExternalProcess.RunAsync("debugfs", ["-R", $"dump -p {path} {dest}", image], CancellationToken.None, timeout: TimeSpan.FromMinutes(5));
        return System.IO.File.Exists(dest) ? await System.IO.File.ReadAllBytesAsync(dest) : throw new FileNotFoundException(path);
    }
}
