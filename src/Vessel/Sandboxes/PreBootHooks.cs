using Vessel.Common;
using Vessel.Ext4;

namespace Vessel.Sandboxes;

/// <summary>What a pre-boot hook sees: the rootfs file is ready and the VM has not started.</summary>
public sealed record PreBootContext(string SandboxId, string RootfsPath, string WorkDirectory);

/// <summary>
/// Runs on the host after the sandbox's rootfs is ready and before the VMM starts; may change
/// the rootfs. A hook that throws aborts the creation, which then removes everything it made
/// (after E2B's PreBootFn, seeds/000).
/// </summary>
public interface IPreBootHook
{
    string Name { get; }

    Task RunAsync(PreBootContext context, CancellationToken cancellationToken);
}

/// <summary>A hook from a delegate.</summary>
public sealed class DelegatePreBootHook : IPreBootHook
{
    private readonly Func<PreBootContext, CancellationToken, Task> _run;

    public DelegatePreBootHook(string name, Func<PreBootContext, CancellationToken, Task> run)
    {
        Name = name;
        _run = run;
    }

    public string Name { get; }

    public Task RunAsync(PreBootContext context, CancellationToken cancellationToken) => _run(context, cancellationToken);
}

/// <summary>
/// Sets the ext4 reserved blocks with the host's <c>tune2fs -r</c>, so the guest image needs no
/// e2fsprogs of its own and never runs an old one against newer features. The rule (round up,
/// skip unchanged, refuse over half) is <see cref="Ext4Tools.SetReservedAsync"/>, shared with templates.
/// </summary>
public sealed class ReservedBlocksHook : IPreBootHook
{
    public ReservedBlocksHook(long reservedBytes)
    {
        if (reservedBytes < 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "Reserved space cannot be negative.");
        }
        ReservedBytes = reservedBytes;
    }

    public long ReservedBytes { get; }

    public string Name => "reserved-blocks";

    public Task RunAsync(PreBootContext context, CancellationToken cancellationToken) =>
        Ext4Tools.SetReservedAsync(context.RootfsPath, ReservedBytes, cancellationToken);
}
