using Vessel.Common;

namespace Vessel.Testing;

/// <summary>Runs the built <c>vessel</c> CLI as a separate process, as a user would.</summary>
public static class VesselCli
{
    public static string DllPath => Path.Combine(AppContext.BaseDirectory, "Vessel.Cli.dll");

    public static Task<ProcessResult> RunAsync(CancellationToken cancellationToken, params string[] args)
        => ExternalProcess.RunAsync("dotnet", [DllPath, .. args], cancellationToken, timeout: TimeSpan.FromMinutes(10));
}
