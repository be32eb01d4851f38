using System.Globalization;

namespace Vessel.Vmm;

/// <summary>
/// A sandbox's network: a virtio-net device on QEMU's user-mode network (libslirp), always
/// present so that a snapshot and its restore see the same device set. <see cref="Outbound"/>
/// says what the guest reaches: <see cref="NetworkOutbound.On"/> everything but the host itself
/// and what <see cref="Deny"/> names, <see cref="NetworkOutbound.Restrict"/> only what
/// <see cref="Allow"/> names, <see cref="NetworkOutbound.Off"/> nothing (slirp's <c>restrict=on</c>)
/// but allowed host loopback ports. Allowed host loopback ports are also reachable as
/// <see cref="HostAddress"/>:PORT (a <c>guestfwd</c> to the host's 127.0.0.1:PORT). Rules live in
/// QEMU (slirp and <see cref="NetworkFilter"/>), outside the guest, so root in the guest cannot lift them.
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
    public static NetworkConfig Isolated { get; } = new() { Outbound = NetworkOutbound.Off };

    public NetworkOutbound Outbound { get; init; } = NetworkOutbound.On;

    public IReadOnlyList<NetworkRule> Allow { get; init; } = [];

    public IReadOnlyList<NetworkRule> Deny { get; init; } = [];

    /// <summary>Throws when a rule cannot be enforced (see docs/ARCHITECTURE.md, Network).</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(Outbound))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"outbound '{Outbound}' is none of on, restrict, off");
        }
        if (Outbound != NetworkOutbound.Off)
        {
            return;
        }
        foreach (NetworkRule rule in Allow)
        {
            if (rule.Port is null || !rule.IsHostLoopback)
            {
                throw new VesselException(VesselErrorReason.Unsupported,
                    $"allow rule '{rule}': with outbound off only host loopback ports (127.0.0.1:PORT, localhost:PORT or {HostName}:PORT) can be allowed; use outbound restrict to allow other destinations");
            }
        }
    }

    /// <summary>Parses on, restrict or off (the API's and the template spec's words).</summary>
    public static NetworkOutbound ParseOutbound(string text) => text switch
    {
        "on" => NetworkOutbound.On,
        "restrict" => NetworkOutbound.Restrict,
        "off" => NetworkOutbound.Off,
        _ => throw new VesselException(VesselErrorReason.InvalidInput, $"outbound '{text}' is none of on, restrict, off"),
    };

    /// <summary>The word <see cref="ParseOutbound"/> reads.</summary>
    public static string FormatOutbound(NetworkOutbound outbound) => outbound switch
    {
        NetworkOutbound.On => "on",
        NetworkOutbound.Restrict => "restrict",
        _ => "off",
    };

    /// <summary>QEMU's <c>-netdev</c> and <c>-device</c> arguments.</summary>
    public IReadOnlyList<string> QemuArguments(string forwardCommand)
    {
        Validate();
        // ipv6=off: rules are IPv4 and the guest is configured for IPv4 only; and QEMU 7.2's libslirp
        // crashed (SIGSEGV) when the filter refused a guest's TCP connect to one of the host's IPv6
        // addresses (NetworkTests.Two_sandboxes_cannot_reach_each_other...).
        var netdev = new List<string> { "user", "id=" + NetdevId, "net=10.0.2.0/24", "ipv6=off", "restrict=" + (Outbound == NetworkOutbound.Off ? "on" : "off") };
        foreach (int port in Allow.Where(r => r.Port is not null && r.IsHostLoopback).Select(r => r.Port!.Value).Distinct().Where(p => !DeniesHostPort(p)))
        {
            string p = port.ToString(CultureInfo.InvariantCulture);
            // cmd: runs once per connection, its stdio being the connection (a tcp: chardev would connect once, at start).
            netdev.Add($"guestfwd=tcp:{HostAddress}:{p}-cmd:{forwardCommand.Replace(",", ",,", StringComparison.Ordinal)} 127.0.0.1 {p}");
        }
        return ["-netdev", string.Join(',', netdev), "-device", $"virtio-net-device,netdev={NetdevId},mac={MacAddress}"];
    }

    /// <summary>QEMU's arguments for a passt backend listening on <paramref name="socketPath"/> (passt has no <c>guestfwd</c>: <see cref="HostAddress"/> is not answered).</summary>
    public IReadOnlyList<string> PasstQemuArguments(string socketPath)
    {
        Validate();
        return ["-netdev", $"stream,id={NetdevId},server=off,addr.type=unix,addr.path={socketPath.Replace(",", ",,", StringComparison.Ordinal)}",
            "-device", $"virtio-net-device,netdev={NetdevId},mac={MacAddress}"];
    }

    /// <summary>True when a deny rule covers the host's 127.0.0.1:<paramref name="port"/> (then no <c>guestfwd</c> relays it).</summary>
    private bool DeniesHostPort(int port) => Deny.Any(r => r.PrefixLength is { } prefix
        ? NetworkRule.PrefixMatches(System.Net.IPAddress.Parse(r.Host), System.Net.IPAddress.Loopback, prefix)
        : r.IsHostLoopback && r.Port == port);
}
