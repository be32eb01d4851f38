using Vessel.Vmm;

namespace Vessel.Sandboxes;

/// <summary>How to create a sandbox.</summary>
public sealed record SandboxOptions
{
    /// <summary>An ext4 image file. Copied (sparse, reflinked where the filesystem can) into the sandbox's directory unless <see cref="CopyRootfs"/> is false.</summary>
    public required string RootfsPath { get; init; }

    /// <summary>False: the VM writes to <see cref="RootfsPath"/> itself.</summary>
    public bool CopyRootfs { get; init; } = true;

    /// <summary>Serve the disk from an NBD export instead of the file (hooks still run on the file first).</summary>
    public DiskConfig? DiskOverride { get; init; }

    public int MemoryMiB { get; init; } = 512;

    public int Vcpus { get; init; } = 1;

    /// <summary>The sandbox is killed this long after it was created; null: never.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>How long the guest may take to boot to a ready agent (TCG is slow).</summary>
    public TimeSpan BootTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>When set, the first pre-boot hook reserves this many bytes of ext4 blocks for root (host tune2fs -r).</summary>
    public long? ReservedBytes { get; init; }

    /// <summary>Hooks run in order after the reserved-blocks hook.</summary>
    public IReadOnlyList<IPreBootHook> PreBootHooks { get; init; } = [];

    public Acceleration Acceleration { get; init; } = Acceleration.Auto;

    /// <summary>Back guest RAM with this file (for snapshots); null: anonymous memory.</summary>
    public string? MemoryBackendFile { get; init; }
}

/// <summary>Where a sandbox's start-up time went (host clock, plus guest uptimes the agent reports).</summary>
public sealed record SandboxTimings(
    TimeSpan PrepareAndHooks,
    TimeSpan VmmStarted,
    TimeSpan AgentReady,
    TimeSpan? GuestInitStarted,
    TimeSpan GuestAgentStarted,
    TimeSpan GuestAgentReady);
