using System.Net;
using Vessel.Vmm;

namespace Vessel.Sandboxes;

public sealed partial class Sandbox
{
    /// <summary>
    /// Forwards the host's 127.0.0.1:<paramref name="hostPort"/> to <paramref name="guestPort"/>
    /// (a resumed sandbox keeps the address its user was given). False when that host port is taken.
    /// </summary>
    public async Task<bool> TryForwardPortAsync(int guestPort, int hostPort, CancellationToken cancellationToken)
    {
        if (guestPort is < 1 or > 65535 || hostPort is < 1 or > 65535)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Ports {hostPort} -> {guestPort}: a TCP port is 1-65535.");
        }
        return _vm is QemuVm qemu
            ? await qemu.TryAddHostForwardAsync(hostPort, guestPort, cancellationToken)
            : throw new VesselException(VesselErrorReason.Unsupported, $"Sandbox {Id}: port forwarding needs the QEMU driver.");
    }

    /// <summary>The host endpoint of a forward on 127.0.0.1.</summary>
    public static IPEndPoint HostEndPoint(int hostPort) => new(IPAddress.Loopback, hostPort);
}
