using Vessel.Common;
using Xunit;

namespace Vessel.Testing;

/// <summary>
/// Facts that need external tools or files. They skip with the missing requirement as the
/// reason; CI installs everything (scripts/setup.sh) so nothing skips there.
/// Requirements: a tool name on PATH, "root", "shared-images", "kvm".
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class RequiresFactAttribute : FactAttribute
{
    public RequiresFactAttribute(params string[] requirements)
    {
        string? missing = Requirements.FirstMissing(requirements);
        if (missing is not null)
        {
            Skip = missing;
        }
    }
}

/// <summary>The theory form of <see cref="RequiresFactAttribute"/>.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class RequiresTheoryAttribute : TheoryAttribute
{
    public RequiresTheoryAttribute(params string[] requirements)
    {
        string? missing = Requirements.FirstMissing(requirements);
        if (missing is not null)
        {
            Skip = missing;
        }
    }
}

public static class Requirements
{
    public static string? FirstMissing(IEnumerable<string> requirements)
    {
        foreach (string r in requirements)
        {
            switch (r)
            {
                case "root":
                    if (Environment.UserName != "root")
                    {
                        return "needs root";
                    }
                    break;
                case "shared-images":
                    if (TestPaths.AlpineTarball is null)
                    {
                        return "needs ../shared/images (the bundled Alpine rootfs tarball)";
                    }
                    break;
                default:
                    if (!ExternalProcess.IsAvailable(r))
                    {
                        return $"needs '{r}' (install with scripts/setup.sh)";
                    }
                    break;
            }
        }
        return null;
    }
}

public static class TestPaths
{
    private static readonly Lazy<string> s_repoRoot = new(FindRepoRoot);

    /// <summary>The repository root (the directory holding Vessel.slnx).</summary>
    public static string RepoRoot => s_repoRoot.Value;

    /// <summary>The bundled Alpine minirootfs tarball from ../shared/images, or null.</summary>
    public static string? AlpineTarball
    {
        get
        {
            string dir = Environment.GetEnvironmentVariable("VESSEL_SHARED_IMAGES")
                ?? Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "images"));
            if (!Directory.Exists(dir))
            {
                return null;
            }
            return Directory.GetFiles(dir, "alpine-minirootfs-*.tar.gz").OrderBy(f => f, StringComparer.Ordinal).LastOrDefault();
        }
    }

    private static string FindRepoRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null)
        {
            if (File.Exists(Path.Combine(dir, "Vessel.slnx")))
            {
                return dir;
            }
            dir = Path.GetDirectoryName(dir);
        }
        throw new InvalidOperationException("Cannot find the repository root (Vessel.slnx) above " + AppContext.BaseDirectory);
    }
}
