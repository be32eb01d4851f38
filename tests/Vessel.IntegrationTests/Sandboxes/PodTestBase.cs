using System.Text;
using Vessel.Agent;
using Vessel.Common;
using Vessel.Oci;
using Vessel.Sandboxes;
using Vessel.Testing;

namespace Vessel.IntegrationTests.Sandboxes;

/// <summary>
/// What the pod tests share: the sandbox environment (one home and kit for the collection),
/// images opened by reference, a pod created from a spec, a command run in one container and
/// the two-image pod.
/// </summary>
public abstract class PodTestBase
{
    private protected PodTestBase(SandboxEnvironment environment)
    {
        Fixture = environment;
    }

    private protected SandboxEnvironment Fixture { get; }

    private protected VesselHome Home => new(Fixture.StateDirectory);

    internal static Task<IImageSource> OpenImageAsync(string reference, CancellationToken cancellationToken)
        => ImageSources.OpenAsync(reference, new ImageSourceOptions(), cancellationToken);

    /// <summary>Creates the pod of <paramref name="spec"/> in the environment's home; images come through <paramref name="open"/> (by default, their references).</summary>
    private protected Task<Sandbox> CreatePodAsync(PodSpec spec, CancellationToken cancellationToken, Func<string, CancellationToken, Task<IImageSource>>? open = null)
        => Fixture.Manager.CreatePodAsync(spec, new SandboxOptions(), open ?? OpenImageAsync, cancellationToken);

    internal static async Task<(int Code, string Stdout, string Stderr)> RunAsync(Sandbox sandbox, string container, params string[] args)
    {
        using var stdout = new MemoryStream();
        using var stderr = new MemoryStream();
        ExitStatus status = await sandbox.ExecAsync(new ExecRequest(args) { Container = container }, null, stdout, stderr, CancellationToken.None);
        return (status.ExitCode, Encoding.UTF8.GetString(stdout.ToArray()), Encoding.UTF8.GetString(stderr.ToArray()));
    }

    internal static PodSpec TwoImages(params PodContainerSpec[] extra) => new([
        new PodContainerSpec("web", TestImages.BusyboxOciReference) { Command = ["sleep", "100000"] },
        new PodContainerSpec("side", TestImages.BusyboxVariantTarball) { Command = ["sleep", "100000"], Env = new Dictionary<string, string> { ["ROLE"] = "side" } },
        .. extra,
    ]);
}
