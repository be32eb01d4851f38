namespace Vessel.Vmm;

/// <summary>
/// A microVM as Vessel describes it, independent of the VMM that runs it: QEMU today,
/// Firecracker and Cloud Hypervisor drivers later map the same model onto their APIs.
/// </summary>
public sealed record VmConfig
{
    public required string KernelPath { get; init; }

    public required string InitramfsPath { get; init; }

    /// <summary>Extra kernel command-line parameters (the driver adds the console and panic settings).</summary>
    public IReadOnlyList<string> KernelParameters { get; init; } = [];

    /// <summary>
    /// The one default guest memory of every command (sandbox run, template build and run):
    /// the agent runs from the read-only kit disk, so a small guest has room (128 MiB works).
    /// </summary>
    public const int DefaultMemoryMiB = 256;

    public int MemoryMiB { get; init; } = DefaultMemoryMiB;

    /// <summary>The guest TSC frequency to announce under TCG (the host's, <see cref="HostTsc"/>); null: the guest calibrates.</summary>
    public long? TscKhz { get; init; } = HostTsc.FrequencyKhz;

    public int Vcpus { get; init; } = 1;

    /// <summary>Disks in order: the first is /dev/vda.</summary>
    public IReadOnlyList<DiskConfig> Disks { get; init; } = [];

    /// <summary>Unix socket of the agent's virtio-serial port; the VMM listens on it.</summary>
    public required string ControlSocketPath { get; init; }

    /// <summary>Serial console output goes to this file.</summary>
    public required string ConsoleLogPath { get; init; }

    /// <summary>The VMM's own control socket (QMP for QEMU).</summary>
    public required string ApiSocketPath { get; init; }

    /// <summary>
    /// Guest RAM from a file (shared), so a snapshot can save device state only and a restore can
    /// map the memory copy-on-write. Null: anonymous memory.
    /// </summary>
    public string? MemoryBackendFile { get; init; }

    /// <summary>
    /// True: the VM writes its RAM through to <see cref="MemoryBackendFile"/> (a VM that will be
    /// snapshotted). False: the file is mapped privately, copy-on-write, so many VMs restored
    /// from one template share its pages and none changes it.
    /// </summary>
    public bool MemoryBackendShared { get; init; } = true;

    /// <summary>
    /// Start paused, waiting for a saved device state (<see cref="IVirtualMachine.RestoreAsync"/>)
    /// instead of booting the kernel.
    /// </summary>
    public bool IncomingSnapshot { get; init; }

    /// <summary>
    /// Anonymous guest RAM as a named backend (<c>mem0</c>) when there is no
    /// <see cref="MemoryBackendFile"/>: a snapshot then carries the RAM in its state stream, and the
    /// VM that restores it (also with this set) finds its RAM block under the same name.
    /// </summary>
    public bool MemoryBackendRam { get; init; }

    public Acceleration Acceleration { get; init; } = Acceleration.Auto;

    /// <summary>A virtio-net device on user-mode networking; null: no network device (the guest has only lo).</summary>
    public NetworkConfig? Network { get; init; }

    /// <summary>The host command a <c>guestfwd</c> runs per connection, given HOST PORT (a netcat that relays stdio).</summary>
    public string NetworkForwardCommand { get; init; } = "busybox nc";

    /// <summary>The connect filter QEMU runs with (its rules decide every destination slirp connects to); null: none.</summary>
    public NetworkFilter? NetworkFilter { get; init; }

    /// <summary>Which stack serves <see cref="Network"/>: slirp in QEMU (the default) or a passt process (the filter then runs in passt).</summary>
    public NetworkBackend NetworkBackend { get; init; }

    /// <summary>passt's socket, next to <see cref="ApiSocketPath"/> (used with <see cref="NetworkBackend.Passt"/>).</summary>
    public string PasstSocketPath => Path.Combine(Path.GetDirectoryName(ApiSocketPath) ?? ".", "passt.sock");

    /// <summary>
    /// A virtio-fs device on a vhost-user backend (<see cref="VirtioFsDaemon"/>); null: none. Its
    /// backend maps guest RAM, so the RAM is a shared memfd (or a shared memory file).
    /// </summary>
    public VirtioFsConfig? VirtioFs { get; init; }
}

/// <summary>A virtio-fs device: the backend's vhost-user socket and the tag the guest mounts.</summary>
public sealed record VirtioFsConfig(string SocketPath, string Tag);

/// <summary>A virtio-blk disk: a local file, or an NBD export served on a unix socket.</summary>
public sealed record DiskConfig
{
    public string? Path { get; init; }

    public string? NbdSocketPath { get; init; }

    public string NbdExport { get; init; } = string.Empty;

    public bool ReadOnly { get; init; }

    /// <summary>The virtio-blk serial (at most 20 bytes), which the guest reads in /sys/block/vdX/serial to find a disk by role.</summary>
    public string? Serial { get; init; }

    public static DiskConfig File(string path, bool readOnly = false) => new() { Path = path, ReadOnly = readOnly };

    public static DiskConfig Nbd(string socketPath, string export, bool readOnly = false) => new() { NbdSocketPath = socketPath, NbdExport = export, ReadOnly = readOnly };
}

public enum Acceleration
{
    /// <summary>KVM where it really works, TCG otherwise (<see cref="AccelerationProbe"/>).</summary>
    Auto = 0,
    Kvm,
    Tcg,
}

/// <summary>A started VM, whatever runs it.</summary>
public interface IVirtualMachine : IAsyncDisposable
{
    /// <summary>Completes when the VMM process exits.</summary>
    Task Exited { get; }

    Acceleration Acceleration { get; }

    /// <summary>The last lines of the serial console, for error messages.</summary>
    string ConsoleTail(int lines = 20);

    /// <summary>How the VMM ended ("exited with status 1", "was killed by signal 7 (SIGBUS)") with what it wrote to stderr, for error messages.</summary>
    string ExitReport { get; }

    /// <summary>Stops the VM: waits up to <paramref name="grace"/> for the guest to power off, then asks the VMM to quit, then kills it.</summary>
    Task StopAsync(TimeSpan grace, CancellationToken cancellationToken);

    /// <summary>
    /// Pauses the guest and saves its device state to <paramref name="stateFile"/>. RAM in a shared
    /// <see cref="VmConfig.MemoryBackendFile"/> is not copied (it is already in that file); any other
    /// RAM (private or anonymous) is written into the state stream. The VM stays paused.
    /// </summary>
    Task SnapshotAsync(string stateFile, CancellationToken cancellationToken);

    /// <summary>Loads the device state a <see cref="SnapshotAsync"/> saved into a VM started with <see cref="VmConfig.IncomingSnapshot"/>, and resumes it.</summary>
    Task RestoreAsync(string stateFile, CancellationToken cancellationToken);
}

/// <summary>Starts VMs from a <see cref="VmConfig"/>.</summary>
public interface IVmmDriver
{
    string Name { get; }

    Task<IVirtualMachine> StartAsync(VmConfig config, CancellationToken cancellationToken);
}
