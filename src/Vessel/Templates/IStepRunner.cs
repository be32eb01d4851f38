using Vessel.Blocks;

namespace Vessel.Templates;

/// <summary>What a build VM is started with.</summary>
internal sealed record StepSessionRequest(
    IBlockDevice Disk,
    IReadOnlyList<PreBootHook> PreBootHooks,
    int Cpu,
    int MemoryMb,
    string WorkDirectory,
    Action<string> Report,
    Vmm.NetworkConfig? Network = null); // the spec's network for the build VM (null: outbound on)

/// <summary>
/// Runs build steps. The sandbox runtime implements it with a VM booted on
/// <see cref="StepSessionRequest.Disk"/> after running the pre-boot hooks on the host;
/// <see cref="HostStepRunner"/> does the steps that need no VM. A session's writes go to the
/// disk; the pipeline exports them as one layer per step after <see cref="IStepSession.RunAsync"/>
/// returns (and before the next step starts).
/// </summary>
internal interface IStepRunner
{
    string Description { get; }

    /// <summary>
    /// What finalize's artifacts depend on besides the spec, for the finalize hash: a runner
    /// that snapshots names its guest kit (a snapshot restores only with that kit), so a new kit
    /// rebuilds finalize and nothing else.
    /// </summary>
    string SnapshotIdentity { get; }

    Task<IStepSession> StartAsync(StepSessionRequest request, CancellationToken cancellationToken);
}

internal interface IStepSession : IAsyncDisposable
{
    /// <summary>Runs one step; on return its disk writes are on the device. A failing command throws <see cref="TemplateStepFailedException"/>.</summary>
    Task RunAsync(TemplateStep step, TemplateConfig config, CopySource? copy, Action<string> output, CancellationToken cancellationToken);

    /// <summary>Starts the start command, waits for the ready check, snapshots into <paramref name="snapshotDirectory"/>; returns null when no snapshot was taken.</summary>
    Task<string?> FinalizeAsync(TemplateConfig config, string snapshotDirectory, Action<string> output, CancellationToken cancellationToken);
}

/// <summary>A step whose command failed: its exit code and the tail of its output.</summary>
public sealed class TemplateStepFailedException : VesselException
{
    public TemplateStepFailedException(string step, int exitCode, string outputTail)
        : base(VesselErrorReason.ToolFailed, $"{step} exited with {exitCode}:\n{outputTail}")
    {
        ExitCode = exitCode;
        OutputTail = outputTail;
    }

    public int ExitCode { get; }

    public string OutputTail { get; }
}
