namespace Vessel.Client;

/// <summary>What a sandbox may reach (docs/api.md, "network").</summary>
public enum SandboxOutbound
{
    /// <summary>Everything but the host itself and what deny rules name.</summary>
    On,

    /// <summary>Only what allow rules name (and DNS).</summary>
    Restrict,

    /// <summary>Nothing but allowed host loopback ports.</summary>
    Off,
}
