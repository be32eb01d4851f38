using System.Globalization;

namespace Vessel.Vmm;

/// <summary>
/// A sandbox's network: a virtio-net device on QEMU's user-mode network (libslirp), always
/// present so that a snapshot and its restore see the same device set. <see cref="Outbound"/>
/// false runs slirp with <c>restrict=on</c>: the guest reaches nothing but the host ports an
/// <see cref="Allow"/> rule names (each a <c>guestfwd</c> from <see cref="HostAddress"/>:PORT
/// to the host's 127.0.0.1:PORT). Rules live in QEMU, outside the guest, so root in the guest
/// cannot lift them.
/// </summary>
public sealed record NetworkConfig
{
    /// <summary>The guest's static address (slirp's first DHCP address), gateway and resolver.</summary>
    public const string GuestAddress = "10.0.2.15";
    public const int PrefixLength = 24;
    public const string Gateway = "10.0.2.2";
    public const string Nameserver = "10.0.2.3";

    /// <summary>
    /// <c>host.vessel.internal</c> in the guest's /etc/hosts: an address on slirp's network that
    /// only <c>guestfwd</c> rules answer, one per allowed host port.
    /// </summary>
    public const string HostAddress = "10.0.2.254";
    public const string HostName = "host.vessel.internal";

    /// <summary>The netdev id QMP's <c>hostfwd_add</c> names.</summary>
    public const string NetdevId = "net0";

    /// <summary>Fixed, so a restored guest's driver state matches its device.</summary>
    public const string MacAddress = "52:54:00:12:34:56";

    /// <summary>The one default for sandboxes: outbound on.</summary>
    public static NetworkConfig Default { get; } = new();

    /// <summary>No outbound traffic; only allowed host ports.</summary>
    public static NetworkConfig Isolated { get; } = new() { Outbound = false };

    public bool Outbound { get; init; } = true;

    public IReadOnlyList<NetworkRule> Allow { get; init; } = [];

    public IReadOnlyList<NetworkRule> Deny { get; init; } = [];

    /// <summary>Throws when a rule cannot be enforced by user-mode networking (see docs/ARCHITECTURE.md, Network).</summary>
    public void Validate()
    {
        if (Deny.Count > 0)
        {
            throw new VesselException(VesselErrorReason.Unsupported,
                $"deny rule '{Deny[0]}': user-mode networking (slirp) cannot filter outbound traffic by destination; turn outbound off and allow what the sandbox needs instead");
        }
        foreach (NetworkRule rule in Allow)
        {
            if (rule.Port is null || !rule.IsHostLoopback)
            {
                throw new VesselException(VesselErrorReason.Unsupported,
                    $"allow rule '{rule}': only host loopback ports (127.0.0.1:PORT, localhost:PORT or {HostName}:PORT) can be allowed; other destinations are reachable only with outbound on");
            }
        }
    }

    /// <summary>QEMU's <c>-netdev</c> and <c>-device</c> arguments.</summary>
    public IReadOnlyList<string> QemuArguments(string forwardCommand)
    {
        Validate();
        var netdev = new List<string> { "user", "id=" + NetdevId, "net=10.0.2.0/24", "restrict=" + (Outbound ? "off" : "on") };
        foreach (int port in Allow.Select(r => r.Port!.Value).Distinct())
        {
            string p = port.ToString(CultureInfo.InvariantCulture);
            // cmd: runs once per connection, its stdio being the connection (a tcp: chardev would connect once, at start).
            netdev.Add($"guestfwd=tcp:{HostAddress}:{p}-cmd:{forwardCommand.Replace(",", ",,", StringComparison.Ordinal)} 127.0.0.1 {p}");
        }
        return ["-netdev", string.Join(',', netdev), "-device", $"virtio-net-device,netdev={NetdevId},mac={MacAddress}"];
    }
}
