namespace Vessel.Guest;

/// <summary>A Debian kernel package pinned by name, version and the SHA-256 of its .deb.</summary>
public sealed record KernelPackage(string Package, string Version, string Sha256, string Release)
{
    /// <summary>
    /// Debian 12's cloud kernel from the bookworm point release (not -security, whose index
    /// moves): small, virtio as modules, ext4 and tmpfs built in.
    /// </summary>
    public static readonly KernelPackage Default = new(
        "linux-image-6.1.0-50-cloud-amd64",
        "6.1.176-1",
        "efe19f605b6f54a8352e68d85a629abb2d30b72a085faef603a9152590baa791",
        "6.1.0-50-cloud-amd64");

    /// <summary>Modules the guest loads, in this order; their dependencies are added before them.</summary>
    public static readonly IReadOnlyList<string> GuestModules =
    [
        "virtio_ring", "virtio", "virtio_mmio", "virtio_pci", "virtio_blk", "virtio_console", "virtio_net",
        "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport", "fuse", "virtiofs", "overlay",
    ];
}
