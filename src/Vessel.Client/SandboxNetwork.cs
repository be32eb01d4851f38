namespace Vessel.Client;

/// <summary>A sandbox's network (<see cref="SandboxCreateOptions.Network"/>); rules are enforced by the daemon's VMM, outside the guest.</summary>
public sealed class SandboxNetwork
{
    /// <summary>What the sandbox reaches beyond the host ports <see cref="Allow"/> names (null: the daemon's default, normally <see cref="SandboxOutbound.On"/>).</summary>
    public SandboxOutbound? Outbound { get; init; }

    /// <summary>CIDRs or HOST:PORTs the sandbox may reach; the host's loopback only as <c>127.0.0.1:PORT</c> or <c>localhost:PORT</c> (reached in the guest as <c>host.vessel.internal:PORT</c>).</summary>
    public IReadOnlyList<string>? Allow { get; init; }

    /// <summary>CIDRs or HOST:PORTs the sandbox may not reach (deny wins over allow).</summary>
    public IReadOnlyList<string>? Deny { get; init; }
}
