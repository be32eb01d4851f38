namespace Vessel.Vmm;

/// <summary>What a sandbox's guest may reach beyond the host ports its allow rules name.</summary>
public enum NetworkOutbound
{
    /// <summary>Everything but the host itself and what deny rules name (the connect filter, policy "on").</summary>
    On,

    /// <summary>Only what allow rules name (the connect filter, policy "restrict"), and the host's resolvers for DNS.</summary>
    Restrict,

    /// <summary>Nothing: slirp's <c>restrict=on</c>; allowed host loopback ports only, through <c>guestfwd</c>.</summary>
    Off,
}
