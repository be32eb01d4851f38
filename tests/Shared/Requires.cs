using System.Reflection;
using Xunit.Sdk;

[assembly: Vessel.Testing.RequirementsGateAttribute]

namespace Vessel.Testing;

/// <summary>
/// Facts that need external tools or images. They skip with the missing requirement as the
/// reason; with <c>CI=true</c> they run and fail instead, naming it (see
/// <see cref="RequirementsGateAttribute"/>), so a missing install step in scripts/setup.sh
/// cannot hide behind a skip.
/// Requirements: a tool name on PATH, "root", "busybox-image", "debian-image" (<see cref="TestImages"/>).
/// A collection whose tests share a fixture names its requirements once, in an attribute derived
/// from this one (e.g. ShimFactAttribute).
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public class RequiresFactAttribute(params string[] requirements) : FactAttribute
{
    public IReadOnlyList<string> Requirements { get; } = requirements;

    /// <summary>The first missing requirement (null when all are there, or under CI: see <see cref="RequirementsGateAttribute"/>).</summary>
    public override string? Skip { get; set; } = Testing.Requirements.SkipReason(requirements);
}

/// <summary>The theory form of <see cref="RequiresFactAttribute"/>.</summary>
[AttributeUsage(AttributeTargets.Method)]
public class RequiresTheoryAttribute(params string[] requirements) : TheoryAttribute
{
    public IReadOnlyList<string> Requirements { get; } = requirements;

    /// <summary>The first missing requirement (null when all are there, or under CI: see <see cref="RequirementsGateAttribute"/>).</summary>
    public override string? Skip { get; set; } = Testing.Requirements.SkipReason(requirements);
}

/// <summary>
/// Runs before every test of the assembly: under <c>CI=true</c>, a test whose requirement is
/// missing fails here with the requirement named (outside CI it was skipped and never gets here).
/// </summary>
[AttributeUsage(AttributeTargets.Assembly)]
public sealed class RequirementsGateAttribute : BeforeAfterTestAttribute
{
    public override void Before(MethodInfo methodUnderTest)
    {
        ArgumentNullException.ThrowIfNull(methodUnderTest);
        IReadOnlyList<string>? requirements = methodUnderTest.GetCustomAttribute<RequiresFactAttribute>()?.Requirements
            ?? methodUnderTest.GetCustomAttribute<RequiresTheoryAttribute>()?.Requirements;
        if (requirements is not null && Requirements.FirstMissing(requirements) is string missing)
        {
            throw new XunitException($"CI=true and a requirement is missing, so this test fails instead of skipping: {missing}");
        }
    }
}

public static class Requirements
{
    /// <summary>True when <c>CI=true</c>: a missing requirement fails the test instead of skipping it.</summary>
    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>The skip reason for these requirements: the first missing one, or null when all are there or under CI.</summary>
    public static string? SkipReason(IEnumerable<string> requirements) => InCi ? null : FirstMissing(requirements);

    public static string? FirstMissing(IEnumerable<string> requirements)
    {
        foreach (string r in requirements)
        {
            string? missing = r switch
            {
                "root" => Environment.UserName == "root" ? null : "needs root",
                "busybox-image" => MissingTool(TestImages.BusyboxTools, "to make the busybox test image"),
                "debian-image" => Environment.UserName != "root" ? "needs root (debootstrap makes the Debian test image)"
                    : MissingTool(TestImages.DebianTools, "to make the Debian test image"),
                _ => MissingTool([r], null),
            };
            if (missing is not null)
            {
                return missing;
            }
        }
        return null;
    }

    private static string? MissingTool(IEnumerable<string> tools, string? purpose)
    {
        foreach (string tool in tools)
        {
            if (!ExternalProcess.IsAvailable(tool))
            {
                return purpose is null
                    ? $"needs '{tool}' (install with scripts/setup.sh)"
                    : $"needs '{tool}' {purpose} (install with scripts/setup.sh)";
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
