namespace Vessel.Templates;

/// <summary>
/// What a <see cref="PreBootHook"/> sees: <paramref name="RootfsPath"/> is a file the host's
/// tools can open (the image itself, or an <see cref="Nbd.NbdFuseFile"/> view of a block device)
/// and the VM has not started; <paramref name="WorkDirectory"/> is scratch space the caller owns.
/// <paramref name="SandboxId"/> names the sandbox being created (null for a template build's
/// host-only phases).
/// </summary>
public sealed record PreBootContext(string RootfsPath, string WorkDirectory, string? SandboxId = null);
