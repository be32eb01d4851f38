using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Vessel.Agent;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.Guest;
using Vessel.Nbd;
using Vessel.Templates;
using Vessel.Vmm;

namespace Vessel.Sandboxes;

/// <summary>
/// Creates sandboxes under <c>&lt;state&gt;/sandboxes/&lt;id&gt;/</c> and sweeps what crashed runs left
/// there. Each sandbox directory holds an <c>owner</c> file (pid and start time of the Vessel
/// process that made it) and, once started, <c>vmm.pid</c>; a directory whose owner is gone is a
/// leftover: its VMM is killed (only if its command line names that directory) and the directory removed.
/// </summary>
public sealed partial class SandboxManager
{
    private readonly string _sandboxesDirectory;
    private readonly GuestKit _kit;
    private readonly IVmmDriver _driver;

    public SandboxManager(string stateDirectory, GuestKit kit, IVmmDriver? driver = null)
    {
        StateDirectory = stateDirectory;
        _sandboxesDirectory = new VesselHome(stateDirectory).Sandboxes;
        _kit = kit;
        _driver = driver ?? new QemuDriver();
    }

    public string StateDirectory { get; }

    /// <summary>The guest kit every sandbox of this manager boots.</summary>
    public GuestKit Kit => _kit;

    public async Task<Sandbox> CreateAsync(SandboxOptions options, CancellationToken cancellationToken)
    {
        SandboxSnapshot? snapshot;
        try
        {
            snapshot = await CheckOptionsAsync(options, cancellationToken);
        }
        catch
        {
            options.Layer?.Dispose();
            throw;
        }
        var clock = Stopwatch.StartNew();
        string id = "sb-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
        string dir = Path.Combine(_sandboxesDirectory, id);
        Directory.CreateDirectory(dir);
        if (OperatingSystem.IsLinux())
        {
            // The agent socket accepts whoever can reach it: only the owner may.
            File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        // What the sandbox will own besides its VM and agent (SandboxParts), released in reverse:
        // template memory view, NBD server or virtiofsd, overlay (or the layer), directory.
        var parts = new CleanupScope();
        parts.Add("sandbox directory", () => DeleteDirectory(dir));
        OverlayDevice? overlay = null;
        RemoteMemory? memory = null;
        parts.Add("overlay", () =>
        {
            if (overlay is not null)
            {
                overlay.Dispose(); // it owns the layer
            }
            else
            {
                options.Layer?.Dispose();
            }
        });
        // On a failure: agent, VM, then the parts.
        var cleanup = new CleanupScope();
        cleanup.Add("sandbox parts", async () => await parts.RunAsync());
        try
        {
            if (options.Layer is { } layer)
            {
                overlay = OverlayDevice.Create(layer, dir, ownsBase: true);
            }
            await File.WriteAllTextAsync(Path.Combine(dir, "owner"), OwnerStamp(Environment.ProcessId) ?? string.Empty, cancellationToken);
            if (options.RestoreFrom is { } restoreFrom)
            {
                // Its memory will be mapped from there: vessel gc and a --no-cache rebuild keep it while this sandbox lives.
                await File.WriteAllTextAsync(Path.Combine(dir, State.HomeReferences.RestoredFromFile), Path.GetFullPath(restoreFrom), cancellationToken);
            }
            PreparedDisk prepared = await PrepareDiskAsync(options, id, dir, overlay, parts, cancellationToken);
            memory = await MountRemoteMemoryAsync(options, snapshot, dir, parts, cancellationToken);
            TimeSpan preparedAt = clock.Elapsed;

            NetworkFilter? filter = options.NetworkDevice ? await NetworkFilter.CreateAsync(options.Network, new VesselHome(StateDirectory).NetworkFilters, cancellationToken) : null;
            string token = snapshot?.Token ?? Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
            VmConfig config = MakeVmConfig(options, snapshot, dir, token, prepared, filter, memory?.FilePath);
            IVirtualMachine vm = cleanup.Add("VM", await _driver.StartAsync(config, cancellationToken));
            if (vm is QemuVm q)
            {
                await File.WriteAllTextAsync(Path.Combine(dir, "vmm.pid"), q.Pid.ToString(CultureInfo.InvariantCulture), cancellationToken);
            }
            if (snapshot is not null)
            {
                await vm.RestoreAsync(Path.Combine(options.RestoreFrom!, SandboxSnapshot.StateFile), cancellationToken);
            }
            TimeSpan vmmStarted = clock.Elapsed;

            AgentClient agent = cleanup.Add("agent connection", await ConnectAgentAsync(id, vm, config, token, options.BootTimeout, cancellationToken));
            TimeSpan ready = clock.Elapsed;
            var health = await agent.HealthAsync(cancellationToken);
            if (!health.RootMounted)
            {
                throw new VesselException(VesselErrorReason.Unavailable, $"The guest of sandbox {id} could not mount its rootfs (is it ext4?). Console:\n{vm.ConsoleTail()}");
            }
            // A booted guest starts at the RTC's whole second, a restored one at the snapshot's time: both get the host's now.
            await agent.SetTimeAsync(DateTimeOffset.UtcNow, cancellationToken);
            var timings = new SandboxTimings(
                preparedAt, vmmStarted, ready, snapshot is null ? ParseInitStart(Path.Combine(dir, "console.log")) : null,
                TimeSpan.FromMilliseconds(agent.Hello.AgentStartMilliseconds), TimeSpan.FromMilliseconds(agent.Hello.UptimeMilliseconds))
            {
                Restored = snapshot is not null,
            };
            var sandbox = new Sandbox(id, dir, token, config, vm, agent, timings, new SandboxParts(_kit.Manifest.Id, overlay, memory, parts));
            cleanup.Dismiss(); // the sandbox owns them all now
            if (options.Timeout is { } lifetime)
            {
                sandbox.KillAfter(lifetime);
            }
            return sandbox;
        }
        catch (Exception failure)
        {
            await cleanup.RunAfterFailureAsync(failure);
            if (memory?.Failure is { } read && failure is not OperationCanceledException)
            {
                // The VM died of a page it could not load (SIGBUS) or stalled on it: the object is the cause.
                throw new VesselException(read.Reason, $"Sandbox {id} could not be restored: reading its memory from the bucket failed: {read.Message}", failure);
            }
            throw;
        }
    }

    /// <summary>
    /// For a snapshot whose memory is in the bucket (<see cref="SandboxSnapshot.RemoteMemoryFile"/>):
    /// mounts it as a file on <paramref name="cleanup"/>; null when the memory is a local file or not needed.
    /// </summary>
    private static async Task<RemoteMemory?> MountRemoteMemoryAsync(SandboxOptions options, SandboxSnapshot? snapshot, string dir, CleanupScope cleanup, CancellationToken cancellationToken)
    {
        if (snapshot is null || snapshot.MemoryInState || File.Exists(Path.Combine(options.RestoreFrom!, SandboxSnapshot.MemoryFile))
            || await RemoteMemory.TryReadReferenceAsync(options.RestoreFrom!, cancellationToken) is not { } blob)
        {
            return null;
        }
        if (options.RemoteStore is not { } bucket)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"Snapshot {options.RestoreFrom} keeps its memory in a bucket ({SandboxSnapshot.RemoteMemoryFile}, from 'vessel template pull --lazy'): set VESSEL_REMOTE_STORE to that bucket, or pull the template without --lazy.");
        }
        return cleanup.Add("template memory view", await RemoteMemory.MountAsync(bucket, blob, snapshot.MemoryMiB, $"snapshot memory of {Path.GetFileName(options.RestoreFrom)}", dir, cancellationToken));
    }

    /// <summary>Refuses options that cannot make a sandbox; returns the snapshot to resume, if any.</summary>
    private async Task<SandboxSnapshot?> CheckOptionsAsync(SandboxOptions options, CancellationToken cancellationToken)
    {
        if ((options.RootfsPath is null ? 0 : 1) + (options.Device is null ? 0 : 1) + (options.Layer is null ? 0 : 1) != (options.PodLowers is null ? 1 : 0))
        {
            throw new ArgumentException("Give the sandbox one of a rootfs file, a block device or a layer (or, for a pod, image disks only).", nameof(options));
        }
        if (options.RootfsPath is not null && Directory.Exists(options.RootfsPath))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Rootfs {options.RootfsPath} is a directory; give an ext4 image file.");
        }
        GuestKit.CheckMemory(options.MemoryMiB);
        options.Network.Validate();
        if (options.RootfsPath is not null && !File.Exists(options.RootfsPath))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"Rootfs {options.RootfsPath} does not exist.");
        }
        SandboxSnapshot? snapshot = options.RestoreFrom is { } from ? await SandboxSnapshot.ReadAsync(from, cancellationToken) : null;
        if (snapshot is not null && snapshot.KitId != _kit.Manifest.Id)
        {
            throw new VesselException(VesselErrorReason.Conflict,
                $"Snapshot {options.RestoreFrom} was taken with guest kit {snapshot.KitId[..12]}, this Vessel has {_kit.Manifest.Id[..12]}: rebuild the template (vessel template build --no-cache).");
        }
        return snapshot;
    }

    /// <summary>The root disk (or a pod's file server) ready for the VM: pre-boot hooks run, the NBD server or virtiofsd started.</summary>
    private sealed record PreparedDisk(DiskConfig? Disk, VirtioFsDaemon? FileServer);

    /// <summary>
    /// Runs the pre-boot hooks on the rootfs (a FUSE view of a device) and starts what serves it;
    /// what it starts goes on <paramref name="cleanup"/>.
    /// </summary>
    private static async Task<PreparedDisk> PrepareDiskAsync(SandboxOptions options, string id, string dir, OverlayDevice? overlay, CleanupScope cleanup, CancellationToken cancellationToken)
    {
        var hooks = new List<PreBootHook>();
        if (options.ReservedBytes is { } reserved)
        {
            hooks.Add(ReservedBlocks.Hook(reserved));
        }
        hooks.AddRange(options.PreBootHooks);
        if (options.PodTrees is { } trees)
        {
            // A virtio-fs pod: its own virtiofsd serving ID/rootfs per image tree, read-only.
            // The trees it uses are listed here, so an images prune keeps them while it lives.
            await File.WriteAllLinesAsync(Path.Combine(dir, PodTree.UsedTreesFile), trees.Select(t => t.Path), cancellationToken);
            VirtioFsDaemon fileServer = cleanup.Add("virtiofsd", await VirtioFsDaemon.StartAsync([.. trees.Select(t => KeyValuePair.Create(t.Id, t.Path))],
                Path.Combine(dir, "fs.sock"), Path.Combine(dir, "fs"), cancellationToken));
            return new PreparedDisk(null, fileServer);
        }
        if (options.PodLowers is not null)
        {
            // A pod: nothing to prepare on the host; the image disks are shared, read-only cache files.
            return new PreparedDisk(null, null);
        }
        if ((options.Device ?? overlay) is { } device)
        {
            if (hooks.Count > 0)
            {
                // The host's tools need a file: a FUSE view of the device, gone before the VM starts.
                NbdFuseFile view = await NbdFuseFile.MountAsync(device, dir, cancellationToken);
                await CleanupScope.RunAsync(view, async v =>
                {
                    await PreBootHook.RunAllAsync(hooks, new PreBootContext(v.FilePath, dir, id), options.Report, cancellationToken);
                    return 0;
                });
            }
            string socket = Path.Combine(dir, "nbd.sock");
            NbdServer nbd = cleanup.Add("NBD server", new NbdServer(new NbdServerOptions { UnixSocketPath = socket }));
            nbd.AddExport(DiskExport, device);
            await nbd.StartAsync(cancellationToken);
            return new PreparedDisk(DiskConfig.Nbd(socket, DiskExport), null);
        }
        string rootfs = options.RootfsPath!;
        if (options.CopyRootfs)
        {
            rootfs = Path.Combine(dir, "rootfs.ext4");
            (await ExternalProcess.RunAsync("cp", ["--sparse=always", "--reflink=auto", options.RootfsPath!, rootfs], cancellationToken, timeout: TimeSpan.FromMinutes(10))).EnsureSuccess();
        }
        await PreBootHook.RunAllAsync(hooks, new PreBootContext(rootfs, dir, id), options.Report, cancellationToken);
        return new PreparedDisk(options.DiskOverride ?? DiskConfig.File(rootfs), null);
    }

    /// <summary>The VM of a sandbox: kit, kernel parameters, disks, sockets in <paramref name="dir"/>, memory backend (a snapshot's when resuming).</summary>
    private VmConfig MakeVmConfig(SandboxOptions options, SandboxSnapshot? snapshot, string dir, string token, PreparedDisk prepared, NetworkFilter? filter, string? remoteMemory)
    {
        return new VmConfig
        {
            KernelPath = options.KernelPath ?? _kit.KernelPath,
            InitramfsPath = options.InitramfsPath ?? _kit.InitramfsPath,
            KernelParameters = options.PodLowers is { } lowers
                ? [.. options.ExtraKernelParameters, $"{Vessel.Agent.Protocol.AgentProtocol.TokenParameter}={token}", $"{(prepared.FileServer is null ? InitScript.LowersParameter : InitScript.FsLowersParameter)}={string.Join(',', lowers.Select(l => l.Id))}"]
                : [.. options.ExtraKernelParameters, $"{Vessel.Agent.Protocol.AgentProtocol.TokenParameter}={token}"],
            MemoryMiB = snapshot?.MemoryMiB ?? options.MemoryMiB,
            Vcpus = snapshot?.Vcpus ?? options.Vcpus,
            // The root disk and the kit's read-only disk (the agent), found by serial in the guest.
            // A restore needs this same device set, and the kit id that the snapshot records covers the kit disk.
            Disks = prepared.Disk is { } disk
                ? [disk with { Serial = InitScript.RootDiskSerial }, DiskConfig.File(_kit.KitDiskPath, readOnly: true) with { Serial = KitDisk.Serial }]
                : [.. prepared.FileServer is null ? options.PodLowers!.Select(l => l.Disk) : [], DiskConfig.File(_kit.KitDiskPath, readOnly: true) with { Serial = KitDisk.Serial }],
            VirtioFs = prepared.FileServer is null ? null : new VirtioFsConfig(prepared.FileServer.SocketPath, InitScript.VirtioFsTag),
            ControlSocketPath = Path.Combine(dir, "ctl.sock"),
            ApiSocketPath = Path.Combine(dir, "qmp.sock"),
            ConsoleLogPath = Path.Combine(dir, "console.log"),
            MemoryBackendFile = snapshot is not null
                ? snapshot.MemoryInState ? null : remoteMemory ?? Path.Combine(options.RestoreFrom!, SandboxSnapshot.MemoryFile)
                : options.Snapshottable ? Path.Combine(dir, SandboxSnapshot.MemoryFile) : options.MemoryBackendFile,
            MemoryBackendRam = snapshot?.MemoryInState ?? (options.Pausable && !options.Snapshottable && options.MemoryBackendFile is null),
            MemoryBackendShared = snapshot is null,
            IncomingSnapshot = snapshot is not null,
            Acceleration = options.Acceleration,
            Network = options.NetworkDevice ? options.Network : null,
            NetworkForwardCommand = ExternalProcess.ResolveTool("busybox") + " nc",
            NetworkFilter = filter,
            NetworkBackend = options.NetworkBackend,
        };
    }

    /// <summary>
    /// A sandbox on a template: a copy-on-write overlay over the template's layer, resumed from
    /// the template's snapshot when it has one (and <paramref name="restore"/> is true), else
    /// booted cold on that disk. Memory and vCPUs come from the template.
    /// </summary>
    internal async Task<Sandbox> CreateFromTemplateAsync(LayerStore layers, State.TemplateRecord template, SandboxOptions options, bool restore, CancellationToken cancellationToken, Action<string>? warn = null)
    {
        Templates.TemplateConfig config = Templates.TemplateConfig.FromJson(template.ConfigJson, $"template '{template.Name}'");
        string? snapshot = restore && template.SnapshotDirectory is { } dir && Directory.Exists(dir) ? dir : null;
        if (snapshot is not null && (await SandboxSnapshot.ReadAsync(snapshot, cancellationToken)).KitId != _kit.Manifest.Id)
        {
            // The snapshot needs the kit that took it; the disk boots with any kit.
            warn?.Invoke($"template '{template.Name}' was snapshotted with another guest kit: booting its disk cold; rebuild it (vessel template build) to resume from a snapshot again");
            snapshot = null;
        }
        return await CreateOnLayerAsync(layers, template.LayerBuildId, snapshot,
            options with { MemoryMiB = config.MemoryMb, Vcpus = config.Cpu, RemoteStore = options.RemoteStore ?? (layers.Storage as TieredLayerStorage)?.Remote as S3LayerStorage }, cancellationToken);
    }

    /// <summary>A sandbox on a copy-on-write overlay over <paramref name="layer"/>, its VM restored from <paramref name="restoreFrom"/> when given.</summary>
    private async Task<Sandbox> CreateOnLayerAsync(LayerStore layers, Guid layer, string? restoreFrom, SandboxOptions options, CancellationToken cancellationToken)
    {
        Build build = await layers.OpenAsync(layer, cancellationToken);
        return await CreateAsync(options with { RootfsPath = null, Layer = build, RestoreFrom = restoreFrom }, cancellationToken);
    }

    /// <summary>
    /// Waits for the guest's agent; when the guest fails first (a stage's failure marker on the
    /// console, QEMU's exit, the boot timeout, a broken connection) the error says which, within
    /// a fraction of a second of the marker or the exit.
    /// </summary>
    private static async Task<AgentClient> ConnectAgentAsync(string id, IVirtualMachine vm, VmConfig config, string token, TimeSpan bootTimeout, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task<AgentClient> connect = AgentClient.ConnectAsync(config.ControlSocketPath, token, bootTimeout, stop.Token);
        Task failed = GuestBootFailure.WatchAsync(config.ConsoleLogPath, stop.Token);
        Task first = await Task.WhenAny(connect, vm.Exited, failed);
        if (first == connect && connect.IsCompletedSuccessfully)
        {
            await stop.CancelAsync();
            return await connect;
        }
        Exception? cause = null;
        if (first == connect)
        {
            cause = connect.Exception?.InnerException;
            if (cause is OperationCanceledException && cancellationToken.IsCancellationRequested)
            {
                throw cause;
            }
            // A broken connection is a symptom: give QEMU's exit or init's marker a moment to show the cause.
            await Task.WhenAny(vm.Exited, failed, Task.Delay(TimeSpan.FromSeconds(2), cancellationToken));
        }
        await stop.CancelAsync();
        try
        {
            AgentClient late = await connect;
            await late.DisposeAsync();
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException or IOException or VesselException)
        {
            cause ??= e;
        }
        cancellationToken.ThrowIfCancellationRequested();
        throw GuestBootFailure.Describe(id, vm, config.ConsoleLogPath, bootTimeout, cause);
    }

    /// <summary>The NBD export name of a sandbox's disk.</summary>
    internal const string DiskExport = "rootfs";

    /// <summary>Removes leftovers of runs whose Vessel process is gone; returns the sandbox ids swept.</summary>
    public Task<IReadOnlyList<string>> SweepAsync(CancellationToken cancellationToken) => SweepDirectoryAsync(StateDirectory, cancellationToken);

    /// <summary>The sweep of <see cref="SweepAsync"/> for a state directory, without a kit.</summary>
    public static async Task<IReadOnlyList<string>> SweepDirectoryAsync(string stateDirectory, CancellationToken cancellationToken)
    {
        var swept = new List<string>();
        foreach (string dir in await FindLeftoversAsync(stateDirectory, cancellationToken))
        {
            string pidFile = Path.Combine(dir, "vmm.pid");
            if (File.Exists(pidFile) && int.TryParse(await File.ReadAllTextAsync(pidFile, cancellationToken), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                await KillLeftoverAsync(pid, dir, cancellationToken);
            }
            await WorkLeftovers.ReclaimAsync(dir, cancellationToken); // a dead run's FUSE views (pre-boot hooks, template memory) are detached first
            DeleteDirectory(dir);
            swept.Add(Path.GetFileName(dir));
        }
        return swept;
    }

    /// <summary>Sandbox directories (runs and build VMs) whose owner is gone: what <see cref="SweepDirectoryAsync"/> removes.</summary>
    public static async Task<IReadOnlyList<string>> FindLeftoversAsync(string stateDirectory, CancellationToken cancellationToken)
    {
        var leftovers = new List<string>();
        string sandboxes = new VesselHome(stateDirectory).Sandboxes;
        if (!Directory.Exists(sandboxes))
        {
            return leftovers;
        }
        foreach (string dir in Directory.EnumerateDirectories(sandboxes, "sb-*"))
        {
            string ownerFile = Path.Combine(dir, "owner");
            string? owner = File.Exists(ownerFile) ? (await File.ReadAllTextAsync(ownerFile, cancellationToken)).Trim() : null;
            if (owner is not { Length: > 0 } || !IsAlive(owner))
            {
                leftovers.Add(dir);
            }
        }
        return leftovers;
    }

    private static async Task KillLeftoverAsync(int pid, string dir, CancellationToken cancellationToken)
    {
        string cmdline;
        try
        {
            cmdline = (await File.ReadAllTextAsync($"/proc/{pid}/cmdline", cancellationToken)).Replace('\0', ' ');
        }
        catch (IOException)
        {
            return; // already gone
        }
        // A recycled pid belongs to someone else: only a process whose arguments name this sandbox's directory is ours.
        if (!cmdline.Contains(dir + "/", StringComparison.Ordinal))
        {
            return;
        }
        try
        {
            using Process p = Process.GetProcessById(pid);
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        }
        catch (ArgumentException)
        {
        }
        catch (InvalidOperationException)
        {
        }
    }

    /// <summary>
    /// "pid starttime" from /proc: a pid alone could be recycled. A zombie (state Z or X: dead,
    /// not yet reaped, as a killed containerd shim is until containerd reaps it) has none.
    /// </summary>
    internal static string? OwnerStamp(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            string[] rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (rest[0] is "Z" or "X")
            {
                return null;
            }
            return $"{pid} {rest[19]}";
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static bool IsAlive(string owner)
    {
        string[] parts = owner.Split(' ');
        return parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && OwnerStamp(pid) == owner;
    }

    private static TimeSpan? ParseInitStart(string consoleLog)
    {
        try
        {
            using var stream = new FileStream(consoleLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var reader = new StreamReader(stream);
            const string Marker = "vessel-init: started at ";
            while (reader.ReadLine() is { } line)
            {
                int at = line.IndexOf(Marker, StringComparison.Ordinal);
                if (at >= 0 && double.TryParse(line[(at + Marker.Length)..].TrimEnd('s', '\r'), NumberStyles.Float, CultureInfo.InvariantCulture, out double s))
                {
                    return TimeSpan.FromSeconds(s);
                }
            }
        }
        catch (IOException)
        {
        }
        return null;
    }

    internal static void DeleteDirectory(string dir)
    {
        try
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
