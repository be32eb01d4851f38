using Vessel.Agent;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.Rootfs;

namespace Vessel.Sandboxes;

/// <summary>What <see cref="Sandbox.PauseAsync"/> left: the snapshot directory and the disk layer to resume on.</summary>
/// <remarks>A pod has no disk of its own (its uppers are guest tmpfs, inside the RAM): its <see cref="Layer"/> is empty and <see cref="Pod"/> names the image disks to re-attach.</remarks>
public sealed record PausedSandbox(string Directory, Guid Layer, SandboxSnapshot Snapshot)
{
    public PodInfo? Pod { get; init; }
}

public sealed partial class Sandbox
{
    /// <summary>
    /// Refuses a <paramref name="directory"/> that exists (<paramref name="what"/> names it in the
    /// error) and makes its empty DIRECTORY.partial, where a pause or snapshot is written before it
    /// is renamed into place; returns that path.
    /// </summary>
    private static string StartPartial(string directory, string what)
    {
        if (Directory.Exists(directory) || File.Exists(directory))
        {
            throw new VesselException(VesselErrorReason.Conflict, $"{what} directory {directory} already exists.");
        }
        string partial = directory + ".partial";
        SandboxManager.DeleteDirectory(partial);
        Directory.CreateDirectory(partial);
        return partial;
    }

    /// <summary>
    /// Pauses the sandbox into <paramref name="directory"/> (created; must not exist) and stops it:
    /// the guest's writes are synced, its RAM and device state saved (RAM in the state stream, or
    /// beside it when the VM's RAM was a shared file), and the blocks its disk overlay wrote exported
    /// to <paramref name="layers"/> as a new build over the overlay's base. Resume with
    /// <see cref="SandboxManager.ResumeAsync"/>. The sandbox is stopped whether this succeeds or not;
    /// a failure leaves no directory and no layer. <paramref name="layerId"/> (default: a new id) names
    /// the exported layer, so a caller can record it before it exists.
    /// </summary>
    internal async Task<PausedSandbox> PauseAsync(string directory, LayerStore layers, Guid? layerId, CancellationToken cancellationToken)
    {
        if (Pod?.Spec.Rootfs == PodRootfsMode.Virtiofs)
        {
            throw VirtioFsPauseRefused(Id);
        }
        if (_parts.Overlay is null && Pod is null)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Sandbox {Id} does not run on a layer (SandboxOptions.Layer): its disk cannot be saved with a pause.");
        }
        string partial = StartPartial(directory, "Pause");
        Guid? exported = null;
        try
        {
            if (Pod is null)
            {
                // A pod writes no disk (read-only lowers, tmpfs uppers): nothing to sync.
                await SyncGuestAsync(cancellationToken);
            }
            // The agent keeps its processes; a resumed sandbox connects to it like a reconnect.
            await _agent.DisposeAsync();
            await Task.Delay(TimeSpan.FromMilliseconds(100), cancellationToken);
            await _vm.SnapshotAsync(Path.Combine(partial, SandboxSnapshot.StateFile), cancellationToken);
            await _vm.StopAsync(TimeSpan.Zero, cancellationToken);
            bool memoryInState = _config.MemoryBackendFile is null || !_config.MemoryBackendShared;
            if (!memoryInState)
            {
                File.Move(_config.MemoryBackendFile!, Path.Combine(partial, SandboxSnapshot.MemoryFile));
            }
            // QEMU is gone: nothing writes the overlay any more, so the export is exactly the disk the snapshot saw.
            // A pod's image disks are read-only cache files: nothing to export.
            Guid layer = Guid.Empty;
            if (_parts.Overlay is not null)
            {
                exported = layer = (await _parts.Overlay.ExportAsync(layers, layerId ?? Guid.NewGuid(), cancellationToken)).BuildId;
            }
            var snapshot = new SandboxSnapshot(SandboxSnapshot.CurrentVersion, _config.MemoryMiB, _config.Vcpus, _parts.KitId, _token, DateTimeOffset.UtcNow)
            {
                MemoryInState = memoryInState,
            };
            await snapshot.WriteAsync(partial, cancellationToken);
            if (Pod is { } pod)
            {
                // What a resume re-attaches, for 'vessel images prune' to keep while the pod is paused.
                await File.WriteAllLinesAsync(Path.Combine(partial, PodLower.PausedLowersFile), pod.Lowers.Select(l => l.Path), cancellationToken);
                // What a daemon that restarts needs to adopt the paused pod.
                await PausedPod.WriteAsync(partial, pod, cancellationToken);
            }
            Directory.Move(partial, directory);
            await KillAsync();
            return new PausedSandbox(directory, layer, snapshot) { Pod = Pod };
        }
        catch (Exception failure)
        {
            // In this order: the VM, the partial directory, a layer already exported.
            var cleanup = new CleanupScope();
            if (exported is { } id)
            {
                cleanup.Add($"exported layer {id}", async () => await layers.DeleteAsync(id, CancellationToken.None));
            }
            cleanup.Add("partial pause directory", () => SandboxManager.DeleteDirectory(partial));
            cleanup.Add("sandbox", async () => await KillAsync());
            await cleanup.RunAfterFailureAsync(failure);
            throw;
        }
    }

    /// <summary>Every dirty page of the guest reaches its disk (before its state is frozen).</summary>
    private async Task SyncGuestAsync(CancellationToken cancellationToken)
    {
        using var output = new MemoryStream();
        ExitStatus synced = await ExecAsync(new ExecRequest([Provisioning.GuestBusybox, "sync"]), null, output, output, cancellationToken);
        if (synced.ExitCode != 0)
        {
            throw new VesselException(VesselErrorReason.ToolFailed, $"sync in sandbox {Id} exited with {synced.ExitCode}: {System.Text.Encoding.UTF8.GetString(output.ToArray())}");
        }
    }

    /// <summary>Why a virtio-fs pod cannot pause (docs/ARCHITECTURE.md, "Pods").</summary>
    internal static VesselException VirtioFsPauseRefused(string id) => new(VesselErrorReason.Conflict,
        $"Sandbox {id} is a virtio-fs pod and cannot pause: QEMU 7.2 (Debian 12) marks its vhost-user-fs device unmigratable, so no snapshot can be taken, "
        + "and Debian 12's C virtiofsd lacks the device-state protocol that newer QEMU needs to migrate it. Create the pod with \"rootfs\": \"block\" to pause it.");
}
