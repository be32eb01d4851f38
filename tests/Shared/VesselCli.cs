namespace Vessel.Testing;

/// <summary>Runs the built <c>vessel</c> CLI as a separate process, as a user would.</summary>
public static class VesselCli
{
    public static string DllPath => Path.Combine(AppContext.BaseDirectory, "Vessel.Cli.dll");

    public static Task<ProcessResult> RunAsync(CancellationToken cancellationToken, params string[] args)
        => ExternalProcess.RunAsync("dotnet", [DllPath, .. args], cancellationToken, timeout: TimeSpan.FromMinutes(10));

    /// <summary>Runs the CLI with extra environment variables (e.g. VESSEL_STATE).</summary>
    public static Task<ProcessResult> RunAsync(IReadOnlyDictionary<string, string> environment, CancellationToken cancellationToken, params string[] args)
        => ExternalProcess.RunAsync("dotnet", [DllPath, .. args], cancellationToken, timeout: TimeSpan.FromMinutes(10), environment: environment);

    /// <summary>Starts the CLI with its stdout and stderr redirected, for tests that watch it run, signal or kill it.</summary>
    public static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add(DllPath);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        return Process.Start(psi)!;
    }
}
