using System.Diagnostics;
using Vessel.Common;

namespace Vessel.Vmm;

/// <summary>
/// One passt (Debian package <c>passt</c>) serving one VM's network on a unix socket that QEMU
/// connects to with <c>-netdev stream</c>. It runs in the foreground under the parent-death
/// signal (<see cref="OwnedProcessLauncher"/>), quits when its QEMU disconnects (<c>--one-off</c>),
/// and is killed by <see cref="DisposeAsync"/> in any case. The guest keeps slirp's addresses
/// (10.0.2.15/24, gateway 10.0.2.2 mapped to the host's loopback, DNS forwarded from 10.0.2.3),
/// so a guest's static configuration works on either backend.
/// </summary>
internal sealed class PasstProcess : IAsyncDisposable
{
    public const string Binary = "passt";

    private readonly ChildProcess _process;

    private PasstProcess(Process process)
    {
        _process = new ChildProcess(process);
    }

    /// <summary>Starts passt listening on <paramref name="socketPath"/>, logging to <paramref name="logPath"/>; returns once the socket exists.</summary>
    public static async Task<PasstProcess> StartAsync(string socketPath, string logPath, IReadOnlyDictionary<string, string>? environment, CancellationToken cancellationToken)
    {
        string binary = ExternalProcess.ResolveTool(Binary);
        if (!File.Exists(binary))
        {
            throw new VesselException(VesselErrorReason.ToolMissing, "The passt network backend needs passt: install it (scripts/setup.sh).");
        }
        // --runas (numeric: this passt takes no names): as root passt would drop to nobody, who cannot bind in a sandbox's directory.
        string[] args =
        [
            "--foreground", "--one-off", "--ipv4-only", "--runas", string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Interop.LibC.Geteuid()}:{Interop.LibC.Getegid()}"), "--socket", socketPath, "--log-file", logPath,
            "--address", NetworkConfig.GuestAddress, "--netmask", NetworkConfig.PrefixLength.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--gateway", NetworkConfig.Gateway, "--dns-forward", NetworkConfig.Nameserver,
        ];
        var passt = new PasstProcess(await OwnedProcessLauncher.StartAsync(binary, args, environment));
        try
        {
            var clock = Stopwatch.StartNew();
            while (!File.Exists(socketPath))
            {
                if (passt._process.Exited.IsCompleted)
                {
                    string stderr = await passt._process.FinalOutputAsync(TimeSpan.FromSeconds(1));
                    string log = File.Exists(logPath) ? await File.ReadAllTextAsync(logPath, cancellationToken) : string.Empty;
                    throw new VesselException(VesselErrorReason.ToolFailed, $"passt exited with status {passt._process.Process.ExitCode} before it listened on {socketPath}: {stderr} {log.Trim()}");
                }
                if (clock.Elapsed > TimeSpan.FromSeconds(30))
                {
                    throw new VesselException(VesselErrorReason.Timeout, $"passt did not listen on {socketPath} within 30 s.");
                }
                await Task.Delay(TimeSpan.FromMilliseconds(5), cancellationToken);
            }
            return passt;
        }
        catch
        {
            await passt.DisposeAsync();
            throw;
        }
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
