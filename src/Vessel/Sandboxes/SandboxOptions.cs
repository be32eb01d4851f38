using Vessel.Blocks;
using Vessel.Templates;
using Vessel.Vmm;

namespace Vessel.Sandboxes;

/// <summary>How to create a sandbox.</summary>
public sealed record SandboxOptions
{
    /// <summary>An ext4 image file. Copied (sparse, reflinked where the filesystem can) into the sandbox's directory unless <see cref="CopyRootfs"/> is false. Either this or <see cref="Device"/>.</summary>
    public string? RootfsPath { get; init; }

    /// <summary>
    /// A block device (a copy-on-write layer over a template's build) that the sandbox serves to
    /// its VM with Vessel's NBD server from its own directory; pre-boot hooks see it as a file
    /// through nbdfuse. The caller keeps owning the device. Either this or <see cref="RootfsPath"/>.
    /// </summary>
    internal IBlockDevice? Device { get; init; }

    /// <summary>
    /// A published build to run on: the sandbox writes to its own copy-on-write overlay in its
    /// directory and owns both the build (disposed with the sandbox, also when creation fails)
    /// and the overlay. Either this, <see cref="Device"/> or <see cref="RootfsPath"/>.
    /// </summary>
    internal Build? Layer { get; init; }

    /// <summary>
    /// A pod: no root disk; these read-only image disks (one per image) are attached instead and
    /// the guest mounts each as a lower of its containers' overlays. Then none of
    /// <see cref="RootfsPath"/>, <see cref="Device"/> or <see cref="Layer"/> is given.
    /// </summary>
    internal IReadOnlyList<PodLower>? PodLowers { get; init; }

    /// <summary>
    /// A virtio-fs pod: these unpacked trees (one per image, the same ids as <see cref="PodLowers"/>)
    /// are served read-only by a virtiofsd the sandbox owns, instead of attaching the image disks.
    /// </summary>
    internal IReadOnlyList<PodTree>? PodTrees { get; init; }

    /// <summary>Boot this kernel instead of the kit's (the shim's boot artifacts); it must boot the initramfs and load the kit's modules.</summary>
    internal string? KernelPath { get; init; }

    /// <summary>Boot this initramfs instead of the kit's; it must end with the kit's own (Vessel's /init), as the shim's combined initrd does.</summary>
    internal string? InitramfsPath { get; init; }

    /// <summary>Kernel parameters put before Vessel's own (an image's boot config); none may start with "vessel.".</summary>
    internal IReadOnlyList<string> ExtraKernelParameters { get; init; } = [];

    /// <summary>False: the VM writes to <see cref="RootfsPath"/> itself.</summary>
    public bool CopyRootfs { get; init; } = true;

    /// <summary>Serve the disk from an NBD export instead of the file (hooks still run on the file first).</summary>
    public DiskConfig? DiskOverride { get; init; }

    public int MemoryMiB { get; init; } = VmConfig.DefaultMemoryMiB;

    public int Vcpus { get; init; } = 1;

    /// <summary>The sandbox is killed this long after it was created; null: never.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>
    /// How long the guest may take to boot to a ready agent. Generous because TCG on a loaded
    /// host is slow (observed: init at 45 s of guest uptime at load 35 on 2 cores); a guest
    /// whose stage fails or whose QEMU exits is reported at once, not after this.
    /// </summary>
    public TimeSpan BootTimeout { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>When set, the first pre-boot hook reserves this many bytes of ext4 blocks for root (host tune2fs -r).</summary>
    public long? ReservedBytes { get; init; }

    /// <summary>Hooks run in order after the reserved-blocks hook.</summary>
    public IReadOnlyList<PreBootHook> PreBootHooks { get; init; } = [];

    /// <summary>Progress lines while the sandbox is prepared (each pre-boot hook as it starts); null: none.</summary>
    public Action<string>? Report { get; init; }

    public Acceleration Acceleration { get; init; } = Acceleration.Auto;

    /// <summary>The sandbox's network (<see cref="NetworkConfig.Default"/>: outbound on). Every sandbox has the device, so snapshots and restores match.</summary>
    public NetworkConfig Network { get; init; } = NetworkConfig.Default;

    /// <summary>False: no virtio-net device at all (benchmarks measure what the device costs; a snapshot and its restore must agree).</summary>
    internal bool NetworkDevice { get; init; } = true;

    /// <summary>The stack behind the device: slirp (the default) or passt (benchmarks compare them, docs/BENCHMARKS.md).</summary>
    internal NetworkBackend NetworkBackend { get; init; }

    /// <summary>Back guest RAM with this file (for snapshots); null: anonymous memory.</summary>
    public string? MemoryBackendFile { get; init; }

    /// <summary>Keep guest RAM in a shared file in the sandbox's directory so that <see cref="Sandbox.SnapshotAndStopAsync"/> can save it.</summary>
    public bool Snapshottable { get; init; }

    /// <summary>
    /// Give anonymous guest RAM a named backend so that <see cref="Sandbox.PauseAsync"/> can save
    /// and a resume can restore it (a VM restored from a template's snapshot is always pausable).
    /// </summary>
    public bool Pausable { get; init; }

    /// <summary>
    /// Resume this snapshot (a directory <see cref="Sandbox.SnapshotAndStopAsync"/> wrote) instead
    /// of booting: its memory file is mapped copy-on-write, and the disk must hold exactly what it
    /// held when the snapshot was taken (a fresh overlay over the same layer).
    /// </summary>
    public string? RestoreFrom { get; init; }

    /// <summary>
    /// The bucket behind the home (<c>VESSEL_REMOTE_STORE</c>): where a lazily pulled template's
    /// snapshot memory is read from on demand (<see cref="RemoteMemory"/>); null: local only.
    /// </summary>
    internal Blocks.S3LayerStorage? RemoteStore { get; init; }
}

/// <summary>Where a sandbox's start-up time went (host clock, plus guest uptimes the agent reports).</summary>
public sealed record SandboxTimings(
    TimeSpan PrepareAndHooks,
    TimeSpan VmmStarted,
    TimeSpan AgentReady,
    TimeSpan? GuestInitStarted,
    TimeSpan GuestAgentStarted,
    TimeSpan GuestAgentReady)
{
    /// <summary>True when the sandbox was resumed from a snapshot rather than booted.</summary>
    public bool Restored { get; init; }
}
