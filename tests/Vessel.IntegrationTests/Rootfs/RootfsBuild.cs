namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// Runs <c>vessel rootfs build</c> as a user would. Setting VESSEL_ROOTFS_STANDIN to a script
/// (tests/Vessel.IntegrationTests/Rootfs/standin/mke2fs-standin.sh) runs that instead, which
/// is how the checker itself is debugged against a known-good peer pipeline.
/// </summary>
internal static class RootfsBuild
{
    public static Task<ProcessResult> RunAsync(CancellationToken cancellationToken, params string[] args)
    {
        string? standin = Environment.GetEnvironmentVariable("VESSEL_ROOTFS_STANDIN");
        if (!string.IsNullOrEmpty(standin))
        {
            return ExternalProcess.RunAsync("bash", [standin, .. args], cancellationToken, timeout: TimeSpan.FromMinutes(10));
        }
        return VesselCli.RunAsync(cancellationToken, ["rootfs", "build", .. args]);
    }

    /// <summary>Builds and fails with the CLI's own output when the build does not succeed.</summary>
    public static async Task<ProcessResult> BuildAsync(string source, string output, CancellationToken cancellationToken, params string[] extra)
    {
        ProcessResult result = await RunAsync(cancellationToken, [source, "-o", output, .. extra]);
        if (result.ExitCode != 0)
        {
            throw new Xunit.Sdk.XunitException(
                $"vessel rootfs build {source} exited with {result.ExitCode}\nstderr: {result.StandardError}\nstdout: {result.StandardOutput}");
        }
        return result;
    }
}
