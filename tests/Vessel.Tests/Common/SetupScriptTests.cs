using System.Text.RegularExpressions;

namespace Vessel.Tests.Common;

/// <summary>
/// Every tool a test names as a requirement comes from a Debian package that
/// scripts/setup.sh installs (or one every Debian system has), so CI, which installs with
/// setup.sh and turns a missing requirement into a failure, can run every test.
/// </summary>
public sealed partial class SetupScriptTests
{
    private static readonly HashSet<string> s_notTools = ["root", "busybox-image", "debian-image"];

    [GeneratedRegex("""Requires(?:Fact|Theory)\(([^)]*)\)""")]
    private static partial Regex AttributePattern();

    [GeneratedRegex("\"([^\"]+)\"")]
    private static partial Regex LiteralPattern();

    [GeneratedRegex(@"^[ \t]+([a-z0-9][a-z0-9+.-]*(?:[ \t]+[a-z0-9][a-z0-9+.-]*)*)[ \t]*(?:#.*)?$", RegexOptions.Multiline)]
    private static partial Regex PackageLinePattern();

    private static IEnumerable<string> RequiredTools()
    {
        var tools = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string file in Directory.EnumerateFiles(Path.Combine(TestPaths.RepoRoot, "tests"), "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains("/obj/", StringComparison.Ordinal) || file.Contains("/bin/", StringComparison.Ordinal))
            {
                continue;
            }
            foreach (Match attribute in AttributePattern().Matches(File.ReadAllText(file)))
            {
                foreach (Match literal in LiteralPattern().Matches(attribute.Groups[1].Value))
                {
                    tools.Add(literal.Groups[1].Value);
                }
            }
        }
        tools.UnionWith(TestImages.BusyboxTools);
        tools.UnionWith(TestImages.DebianTools);
        tools.ExceptWith(s_notTools);
        return tools;
    }

    private static HashSet<string> SetupPackages()
    {
        // The main list, and node_packages (installed when node or npm is missing).
        string script = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "scripts", "setup.sh"));
        var packages = new HashSet<string>(StringComparer.Ordinal);
        foreach (string list in new[] { "\npackages=(", "\nnode_packages=(" })
        {
            int start = script.IndexOf(list, StringComparison.Ordinal);
            int end = script.IndexOf("\n)", start, StringComparison.Ordinal);
            packages.UnionWith(PackageLinePattern().Matches(script[start..end])
                .SelectMany(m => m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)));
        }
        return packages;
    }

    /// <summary>True when a listed package depends on <paramref name="package"/> (clang -> clang-14).</summary>
    private static async Task<bool> IsDependencyOfAsync(string package, HashSet<string> listed)
    {
        foreach (string p in listed)
        {
            ProcessResult r = await ExternalProcess.RunAsync("dpkg-query", ["-W", "-f=${Depends}, ${Pre-Depends}", p], CancellationToken.None);
            if (r.Succeeded && r.StandardOutput.Split(',', '|').Select(d => d.Trim().Split(' ', ':')[0]).Contains(package, StringComparer.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    private static async Task<string?> PackageOfAsync(string path)
    {
        string real = Path.GetFullPath(new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? path);
        foreach (string candidate in new[] { real, path }.SelectMany(p => new[] { p, p.StartsWith("/usr/", StringComparison.Ordinal) ? p[4..] : "/usr" + p }).Distinct())
        {
            ProcessResult r = await ExternalProcess.RunAsync("dpkg-query", ["-S", candidate], CancellationToken.None);
            if (r.Succeeded)
            {
                return r.StandardOutput.Split(':')[0].Trim();
            }
        }
        return null;
    }

    // dpkg-query -S reads the whole package database for each tool: minutes on a loaded 2-core host.
    [RequiresFact("dpkg-query", Timeout = 300_000)]
    public async Task Every_required_tool_comes_from_a_package_that_setup_installs_or_every_debian_has()
    {
        HashSet<string> packages = SetupPackages();
        Assert.Contains("qemu-system-x86", packages); // the parser found the list
        var problems = new List<string>();
        foreach (string tool in RequiredTools())
        {
            string path = ExternalProcess.ResolveTool(tool);
            if (!File.Exists(path))
            {
                problems.Add($"{tool}: not installed here (scripts/setup.sh should install it)");
                continue;
            }
            string? package = await PackageOfAsync(path);
            if (package is null)
            {
                problems.Add($"{tool}: {path} belongs to no Debian package");
                continue;
            }
            if (packages.Contains(package) || await IsDependencyOfAsync(package, packages))
            {
                continue;
            }
            string priority = (await ExternalProcess.RunAsync("dpkg-query", ["-W", "-f=${Priority} ${Essential}", package], CancellationToken.None)).StandardOutput;
            if (!priority.StartsWith("required", StringComparison.Ordinal) && !priority.EndsWith("yes", StringComparison.Ordinal))
            {
                problems.Add($"{tool}: from package {package} ({priority.Trim()}), which scripts/setup.sh does not install");
            }
        }
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }
}
