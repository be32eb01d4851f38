namespace Vessel.Templates;

/// <summary>
/// Host-side work on a rootfs after its device is ready and before the VM boots (seed 000's
/// PreBootFn). <paramref name="rootfsImage"/> is a file the host's tools can open: the
/// image itself or an <see cref="Nbd.NbdFuseFile"/> view of the copy-on-write layer.
/// </summary>
public delegate Task PreBootHook(string rootfsImage, CancellationToken cancellationToken);

/// <summary>A named hook, so that progress output and errors say which hook ran.</summary>
public sealed record PreBootHookOption(string Name, PreBootHook Hook);
