namespace Vessel.Common;

/// <summary>A directory that this object owns and deletes, with everything in it, on disposal.</summary>
public sealed class TempDirectory : IDisposable
{
    private TempDirectory(string path)
    {
        Path = path;
    }

    public string Path { get; }

    /// <summary>Creates a fresh directory under <paramref name="parent"/> (default: the system temp directory).</summary>
    public static TempDirectory Create(string prefix = "vessel-", string? parent = null)
    {
        string root = parent ?? System.IO.Path.GetTempPath();
        Directory.CreateDirectory(root);
        string path = System.IO.Path.Combine(root, prefix + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(path);
        return new TempDirectory(path);
    }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose()
    {
        try
        {
            if (Directory.Exists(Path))
            {
                Directory.Delete(Path, recursive: true);
            }
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
