using Vessel.Blocks;
using Vessel.Common;

namespace Vessel.Sandboxes;

/// <summary>
/// What a sandbox owns besides its VM and agent connection, built by
/// <see cref="SandboxManager.CreateAsync"/>: the template memory view, the disk's NBD server or a
/// pod's virtiofsd, the overlay (or the layer) and the working directory, all on
/// <paramref name="Release"/>, the one cleanup stack that the creator releases on a failure and
/// the sandbox when it stops (in reverse order of acquisition, every step even when one fails).
/// </summary>
/// <param name="KitId">The guest kit the sandbox booted (a snapshot records it).</param>
/// <param name="Overlay">The sandbox's writable disk, when it runs on a layer (a pause exports it).</param>
/// <param name="Memory">The template memory fetched from a bucket, when it resumed a lazy snapshot.</param>
internal sealed record SandboxParts(string KitId, OverlayDevice? Overlay, RemoteMemory? Memory, CleanupScope Release);
