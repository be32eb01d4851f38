using Vessel.Blocks;

namespace Vessel.Sandboxes;

public sealed partial class SandboxManager
{
    /// <summary>
    /// Resumes a sandbox that <see cref="Sandbox.PauseAsync"/> saved: a new VM with the same device
    /// set on a fresh copy-on-write overlay over the paused layer, its RAM and device state loaded
    /// from the snapshot, the agent reached with the recorded token (processes kept). The snapshot
    /// directory is no longer needed once this returns (RAM saved in the stream is loaded whole;
    /// a memory file stays mapped by the VM even when deleted).
    /// </summary>
    internal async Task<Sandbox> ResumeAsync(LayerStore layers, PausedSandbox paused, SandboxOptions options, CancellationToken cancellationToken)
    {
        if (paused.Pod is { } pod)
        {
            return await ResumePodAsync(paused, pod, options, cancellationToken);
        }
        return await CreateOnLayerAsync(layers, paused.Layer, paused.Directory, options with { Device = null, Pausable = true }, cancellationToken);
    }
}
