namespace Vessel.Vmm;

/// <summary>Which user-mode network stack serves a VM's virtio-net device (docs/ARCHITECTURE.md, Network).</summary>
public enum NetworkBackend
{
    /// <summary>QEMU's own libslirp (<c>-netdev user</c>), with the connect filter preloaded into QEMU: the default.</summary>
    Slirp,

    /// <summary>
    /// A passt process per VM (<c>-netdev stream</c> on its unix socket), with the connect filter
    /// preloaded into passt. Measured against slirp (docs/BENCHMARKS.md, "slirp or passt"); no
    /// <c>guestfwd</c> (host.vessel.internal) and no port forwards added at run time.
    /// </summary>
    Passt,
}
