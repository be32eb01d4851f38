namespace Vessel.IntegrationTests.Templates;

public sealed class TemplateCliTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-tpl-cli-");

    public void Dispose() => _dir.Dispose();

    [RequiresFact("nbdfuse", "fusermount3", "debugfs", "busybox-image", "root")]
    public async Task Build_shows_phases_marks_cached_ones_and_ls_show_rm_work()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        CancellationToken ct = cts.Token;
        Directory.CreateDirectory(_dir.Combine("app"));
        File.WriteAllText(_dir.Combine("app", "a.txt"), "a\n");
        string spec = TestImages.WriteTemplateSpec(_dir.Combine("spec.json"), "cli", """ "steps": [ { "copy": { "src": "app", "dest": "/app" } }, { "env": { "A": "1" } } ] """);
        string home = _dir.Combine("home");
        ProcessResult first = await VesselCli.RunAsync(ct, "template", "build", "-f", spec, "--home", home);
        Assert.True(first.ExitCode == 0, first.StandardError);
        Assert.Contains("[2/4] step 1/2: COPY app /app", first.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("CACHED", first.StandardError, StringComparison.Ordinal);
        ProcessResult second = await VesselCli.RunAsync(ct, "template", "build", "-f", spec, "--home", home);
        Assert.Equal(4, second.StandardError.Split('\n').Count(l => l.EndsWith("CACHED", StringComparison.Ordinal)));
        Assert.Equal(first.StandardOutput, second.StandardOutput);
        Assert.Contains("cli", (await VesselCli.RunAsync(ct, "template", "ls", "--home", home)).StandardOutput, StringComparison.Ordinal);
        Assert.Contains("\"copy\"", (await VesselCli.RunAsync(ct, "template", "show", "cli", "--home", home)).StandardOutput, StringComparison.Ordinal);
        Assert.Equal(0, (await VesselCli.RunAsync(ct, "template", "rm", "cli", "--home", home)).ExitCode);
        ProcessResult missing = await VesselCli.RunAsync(ct, "template", "show", "cli", "--home", home);
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("no template named 'cli'", missing.StandardError, StringComparison.Ordinal);

        File.WriteAllText(spec, "{ \"name\": \"cli\",\n  \"from\": \"x\",\n  \"cpu\": 0 }");
        ProcessResult bad = await VesselCli.RunAsync(ct, "template", "build", "-f", spec, "--home", home);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("line 3: cpu:", bad.StandardError, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(home, "work")));
    }
}
