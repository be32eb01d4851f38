namespace Vessel.IntegrationTests.Blocks;

/// <summary>Disk images made by real tools for block and NBD tests.</summary>
internal static class DiskImages
{
    /// <summary>An ext4 image made by mke2fs from a directory of random files (so it has data and holes).</summary>
    public static async Task<string> MakeExt4Async(string workDir, string name, long sizeMiB, CancellationToken ct)
    {
        string tree = Path.Combine(workDir, name + "-tree");
        Directory.CreateDirectory(Path.Combine(tree, "etc"));
        var rng = new Random(name.Length * 31);
        byte[] big = new byte[3 << 20];
        rng.NextBytes(big);
        await File.WriteAllBytesAsync(Path.Combine(tree, "big.bin"), big, ct);
        for (int i = 0; i < 20; i++)
        {
            await File.WriteAllTextAsync(Path.Combine(tree, "etc", $"file{i}.conf"), $"value {i} {rng.Next()}\n", ct);
        }
        string image = Path.Combine(workDir, name + ".ext4");
        (await ExternalProcess.RunAsync("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", "-d", tree, image, $"{sizeMiB}M"], ct)).EnsureSuccess();
        Directory.Delete(tree, recursive: true);
        return image;
    }
}
