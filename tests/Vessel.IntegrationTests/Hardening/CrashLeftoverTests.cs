using System.Diagnostics;
using Vessel.Common;
using Vessel.Testing;
using Xunit;

namespace Vessel.IntegrationTests.Hardening;

/// <summary>
/// <c>kill -9</c> of the real CLI, then the next run reclaims what it left (issue 18, item 3).
/// </summary>
public sealed class CrashLeftoverTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-crash-it-");

    public void Dispose() => _dir.Dispose();

    private static Process StartCli(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add(VesselCli.DllPath);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        return Process.Start(psi)!;
    }

    private static string[] Partials(string dir) => Directory.EnumerateFiles(dir)
        .Where(f => Path.GetFileName(f).StartsWith('.') && f.EndsWith(".partial", StringComparison.Ordinal)).ToArray();

    [RequiresFact("e2fsck", Timeout = 240_000)]
    public async Task A_rootfs_build_killed_mid_write_leaves_a_partial_that_the_next_build_reclaims()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(220));
        // Incompressible data, so that the build is busy writing for a while.
        string big = _dir.Combine("big.tar");
        var rnd = new Random(5);
        byte[] chunk = new byte[8 << 20];
        File.WriteAllBytes(big, LayersImageSource.Tar(w =>
        {
            for (int i = 0; i < 12; i++)
            {
                rnd.NextBytes(chunk);
                LayersImageSource.File(w, $"data/{i}.bin", Convert.ToBase64String(chunk));
            }
        }));
        string outDir = _dir.Combine("out");
        Directory.CreateDirectory(outDir);
        string output = Path.Combine(outDir, "rootfs.ext4");

        using (Process cli = StartCli("rootfs", "build", big, "-o", output))
        {
            Task<string> stderr = cli.StandardError.ReadToEndAsync(cts.Token);
            Task<string> stdout = cli.StandardOutput.ReadToEndAsync(cts.Token);
            // Wait until the partial file exists and the build is writing it, then SIGKILL: no cleanup runs.
            while (Partials(outDir).Length == 0)
            {
                if (cli.HasExited)
                {
                    Assert.Fail($"the build ended (exit {cli.ExitCode}) before it wrote anything: {await stderr} {await stdout}");
                }
                await Task.Delay(10, cts.Token);
            }
            await Task.Delay(200, cts.Token);
            Assert.False(cli.HasExited, "the build finished before it could be killed");
            cli.Kill();
            await cli.WaitForExitAsync(cts.Token);
        }
        string[] left = Partials(outDir);
        Assert.Single(left);
        Assert.False(File.Exists(output));

        // The next build into that directory removes it (its owner is gone) and succeeds.
        string small = _dir.Combine("small.tar");
        File.WriteAllBytes(small, LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/hostname", "next\n")));
        ProcessResult next = await VesselCli.RunAsync(cts.Token, "rootfs", "build", small, "-o", output, "--size", "64M");
        Assert.True(next.ExitCode == 0, next.StandardError);
        Assert.Empty(Partials(outDir));
        Assert.Null(await E2fs.CheckAsync(output));
    }
}
