using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Vessel.Agent.Protocol;
using Vessel.Common;

namespace Vessel.Vmm;

/// <summary>
/// Runs a <see cref="VmConfig"/> on QEMU's <c>microvm</c> machine: kernel + initramfs, virtio-mmio
/// disks and a virtio-serial control port, console to a file, QMP on a unix socket.
/// </summary>
public sealed class QemuDriver : IVmmDriver
{
    public const string DefaultBinary = "qemu-system-x86_64";

    private readonly string _binary;

    public QemuDriver(string binary = DefaultBinary)
    {
        _binary = binary;
    }

    public string Name => "qemu";

    /// <summary>The QEMU command line for <paramref name="config"/>, without the binary.</summary>
    public static IReadOnlyList<string> BuildArguments(VmConfig config, Acceleration acceleration)
    {
        if (acceleration == Acceleration.Auto)
        {
            throw new ArgumentException("Resolve the acceleration first.", nameof(acceleration));
        }
        var args = new List<string>();
        string machine = "microvm";
        if (config.MemoryBackendFile is not null)
        {
            args.AddRange(["-object", $"memory-backend-file,id=mem0,size={config.MemoryMiB}M,mem-path={Escape(config.MemoryBackendFile)},share={(config.MemoryBackendShared ? "on" : "off")}"]);
            machine += ",memory-backend=mem0";
        }
        else if (config.VirtioFs is not null)
        {
            // vhost-user: the backend maps guest RAM, which must be shared (a memfd here).
            args.AddRange(["-object", $"memory-backend-memfd,id=mem0,size={config.MemoryMiB}M,share=on"]);
            machine += ",memory-backend=mem0";
        }
        else if (config.MemoryBackendRam)
        {
            args.AddRange(["-object", $"memory-backend-ram,id=mem0,size={config.MemoryMiB}M"]);
            machine += ",memory-backend=mem0";
        }
        args.AddRange(["-M", machine]);
        args.AddRange(acceleration == Acceleration.Kvm ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg", "-cpu", "max"]);
        args.AddRange(["-m", $"{config.MemoryMiB}M", "-smp", config.Vcpus.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        args.AddRange(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]);
        args.AddRange(["-chardev", $"file,id=console,path={Escape(config.ConsoleLogPath)}", "-serial", "chardev:console"]);
        args.AddRange(["-kernel", config.KernelPath, "-initrd", config.InitramfsPath]);
        var cmdline = new List<string> { "console=ttyS0", "quiet", "panic=-1", "reboot=t" };
        if (acceleration == Acceleration.Tcg)
        {
            // Under TCG on a loaded host the kernel's TSC calibration against the PIT fails, the
            // TSC is marked unstable and the boot crawls on jiffies (observed: no progress past
            // "Mount-cache" in 60 s at load 17 on 2 cores). Giving the frequency skips calibration;
            // it must be the host's, which TCG's guest TSC runs at (HostTsc).
            if (config.TscKhz is { } khz)
            {
                cmdline.Add("tsc_early_khz=" + khz.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            cmdline.AddRange(["tsc=reliable", "no_timer_check"]);
        }
        cmdline.AddRange(config.KernelParameters);
        args.AddRange(["-append", string.Join(' ', cmdline)]);
        for (int i = 0; i < config.Disks.Count; i++)
        {
            DiskConfig d = config.Disks[i];
            string source = d.Path is not null
                ? $"file={Escape(d.Path)},format=raw"
                : d.NbdSocketPath is not null
                    ? $"driver=nbd,server.type=unix,server.path={Escape(d.NbdSocketPath)}{(d.NbdExport.Length > 0 ? ",export=" + Escape(d.NbdExport) : string.Empty)}"
                    : throw new ArgumentException($"Disk {i} has neither a file nor an NBD socket.", nameof(config));
            string ro = d.ReadOnly ? ",readonly=on" : string.Empty;
            string serial = d.Serial is { } name ? ",serial=" + Escape(name) : string.Empty;
            args.AddRange(["-drive", $"id=d{i},{source},if=none,cache=unsafe,discard=unmap{ro}", "-device", $"virtio-blk-device,drive=d{i}{serial}"]);
        }
        if (config.VirtioFs is { } fs)
        {
            if (config.MemoryBackendFile is not null && !config.MemoryBackendShared)
            {
                throw new ArgumentException("A virtio-fs device needs guest RAM shared with its backend; a private memory file is not.", nameof(config));
            }
            // microvm's virtio-mmio transports default to the legacy (version 1) interface, which
            // libvhost-user refuses ("virtio legacy devices aren't supported"): modern transports.
            args.AddRange(["-global", "virtio-mmio.force-legacy=false"]);
            args.AddRange(["-chardev", $"socket,id=fs0,path={Escape(fs.SocketPath)}", "-device", $"vhost-user-fs-device,chardev=fs0,tag={Escape(fs.Tag)}"]);
        }
        if (config.Network is { } network)
        {
            args.AddRange(config.NetworkBackend == NetworkBackend.Passt ? network.PasstQemuArguments(config.PasstSocketPath) : network.QemuArguments(config.NetworkForwardCommand));
        }
        args.AddRange(["-device", "virtio-serial-device"]);
        args.AddRange(["-chardev", $"socket,id=ctl,path={Escape(config.ControlSocketPath)},server=on,wait=off"]);
        args.AddRange(["-device", $"virtserialport,chardev=ctl,name={AgentProtocol.PortName}"]);
        args.AddRange(["-qmp", $"unix:{Escape(config.ApiSocketPath)},server=on,wait=off"]);
        if (config.IncomingSnapshot)
        {
            if (config.MemoryBackendFile is null && !config.MemoryBackendRam)
            {
                throw new ArgumentException("Restoring a snapshot needs the memory file it was taken with, or a named RAM backend for a snapshot that carries its RAM.", nameof(config));
            }
            args.AddRange(["-incoming", "defer"]);
        }
        return args;
    }

    public async Task<IVirtualMachine> StartAsync(VmConfig config, CancellationToken cancellationToken)
    {
        foreach (string socket in new[] { config.ControlSocketPath, config.ApiSocketPath })
        {
            // sun_path holds 108 bytes including the NUL.
            if (Encoding.UTF8.GetByteCount(socket) > 107)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"Socket path {socket} is longer than the 107 bytes a unix socket allows: use a shorter state directory.");
            }
        }
        Acceleration acceleration = AccelerationProbe.Resolve(config.Acceleration);
        IReadOnlyList<string> args = BuildArguments(config, acceleration);
        string binary = ExternalProcess.ResolveTool(_binary);
        if (!File.Exists(binary))
        {
            throw new VesselException(VesselErrorReason.ToolMissing, $"Cannot run {_binary}: not found. Install qemu-system-x86 (scripts/setup.sh).");
        }
        bool passt = config.Network is not null && config.NetworkBackend == NetworkBackend.Passt;
        var cleanup = new CleanupScope();
        try
        {
            // With passt the filter decides passt's connects instead of QEMU's.
            PasstProcess? network = passt
                ? cleanup.Add("passt", await PasstProcess.StartAsync(config.PasstSocketPath, Path.ChangeExtension(config.PasstSocketPath, ".log"), config.NetworkFilter?.Environment, cancellationToken))
                : null;
            Process process;
            try
            {
                // QEMU dies with this process (PR_SET_PDEATHSIG), also on kill -9.
                process = await OwnedProcessLauncher.StartAsync(binary, args, passt ? null : config.NetworkFilter?.Environment);
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new VesselException(VesselErrorReason.ToolMissing, $"Cannot run {_binary}: {e.Message}. Install qemu-system-x86 (scripts/setup.sh).", e);
            }
            cleanup.Dismiss(); // the VM owns passt from here
            QemuVm vm = cleanup.Add("QEMU", new QemuVm(process, config, acceleration, network));
            await vm.ConnectQmpAsync(cancellationToken);
            cleanup.Dismiss();
            return vm;
        }
        catch (Exception failure)
        {
            await cleanup.RunAfterFailureAsync(failure);
            throw;
        }
    }

    /// <summary>QEMU option values double their commas.</summary>
    private static string Escape(string value) => value.Replace(",", ",,", StringComparison.Ordinal);
}

/// <summary>A running QEMU process with its QMP session.</summary>
public sealed class QemuVm : IVirtualMachine
{
    private const int MaxStderrChars = 64 << 10;

    private readonly ChildProcess _process;
    private readonly VmConfig _config;
    private readonly PasstProcess? _passt;
    private QmpClient? _qmp;
    private int _disposed;

    internal QemuVm(Process process, VmConfig config, Acceleration acceleration, PasstProcess? passt = null)
    {
        _process = new ChildProcess(process, MaxStderrChars, keepStdout: true);
        _passt = passt;
        _config = config;
        Acceleration = acceleration;
    }

    public int Pid => _process.Pid;

    public Acceleration Acceleration { get; }

    public Task Exited => _process.Exited;

    public QmpClient Qmp => _qmp ?? throw new InvalidOperationException("QMP is not connected.");

    /// <summary>What QEMU wrote to stderr (its own errors, not the guest's).</summary>
    public string StandardError => _process.Output;

    /// <summary>"exited with status N" or "was killed by signal S (NAME)", or "is running".</summary>
    public string ExitDescription
    {
        get
        {
            if (!_process.Exited.IsCompleted)
            {
                return "is running";
            }
            // .NET reports a process killed by signal N as exit code 128 + N.
            int code = _process.Process.ExitCode;
            return code > 128 && code < 128 + 65
                ? $"was killed by signal {code - 128} ({SignalName(code - 128)})"
                : $"exited with status {code}";
        }
    }

    private static string SignalName(int signal) => signal switch
    {
        1 => "SIGHUP",
        2 => "SIGINT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "signal " + signal.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    public string ExitReport => StandardError.Trim() is { Length: > 0 } stderr ? $"QEMU {ExitDescription}; its stderr:\n{stderr}" : $"QEMU {ExitDescription}";

    public string ConsoleTail(int lines = 20)
    {
        try
        {
            using var stream = new FileStream(_config.ConsoleLogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            long start = Math.Max(0, stream.Length - 16384);
            stream.Seek(start, SeekOrigin.Begin);
            using var reader = new StreamReader(stream);
            string[] all = reader.ReadToEnd().Split('\n');
            return string.Join('\n', all.TakeLast(lines)).Trim();
        }
        catch (IOException)
        {
            return string.Empty;
        }
    }

    internal async Task ConnectQmpAsync(CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task<QmpClient> connect = QmpClient.ConnectAsync(_config.ApiSocketPath, TimeSpan.FromSeconds(30), linked.Token);
        Task first = await Task.WhenAny(connect, _process.Exited);
        if (first == _process.Exited && !connect.IsCompleted)
        {
            await linked.CancelAsync();
            try
            {
                await connect;
            }
            catch (Exception e) when (e is OperationCanceledException or TimeoutException or IOException)
            {
            }
            throw await ExitedAtStartAsync(null);
        }
        try
        {
            _qmp = await connect;
        }
        catch (Exception e) when (e is VesselException or IOException or TimeoutException)
        {
            // QEMU may open QMP and then fail (a missing kernel, too little memory): its exit is the cause.
            if (await WaitExitAsync(TimeSpan.FromSeconds(2), CancellationToken.None))
            {
                throw await ExitedAtStartAsync(e);
            }
            throw;
        }
    }

    private async Task<VesselException> ExitedAtStartAsync(Exception? inner)
    {
        // The stderr pump may still be reading QEMU's last words: it ends at the pipe's end.
        string stderr = await _process.FinalOutputAsync(TimeSpan.FromSeconds(1));
        return new VesselException(VesselErrorReason.ToolFailed, $"QEMU {ExitDescription} at start: {stderr}", inner);
    }

    public async Task StopAsync(TimeSpan grace, CancellationToken cancellationToken)
    {
        if (_process.Exited.IsCompleted)
        {
            return;
        }
        if (grace > TimeSpan.Zero && await WaitExitAsync(grace, cancellationToken))
        {
            return;
        }
        if (_qmp is not null)
        {
            try
            {
                using var quitTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                quitTimeout.CancelAfter(TimeSpan.FromSeconds(2));
                await _qmp.ExecuteAsync("quit", null, quitTimeout.Token);
            }
            catch (Exception e) when (e is VesselException or OperationCanceledException or IOException)
            {
                // QEMU may close QMP before answering "quit"; the kill below covers a hung one.
            }
            if (await WaitExitAsync(TimeSpan.FromSeconds(3), cancellationToken))
            {
                return;
            }
        }
        ExternalProcess.KillTree(_process.Process);
        await _process.Exited.WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None);
    }

    /// <summary>
    /// Forwards TCP 127.0.0.1:<paramref name="hostPort"/> on the host to the guest's
    /// <paramref name="guestPort"/> (slirp <c>hostfwd_add</c> at run time). False when the host
    /// port could not be bound.
    /// </summary>
    public async Task<bool> TryAddHostForwardAsync(int hostPort, int guestPort, CancellationToken cancellationToken)
    {
        if (_config.Network is null)
        {
            throw new VesselException(VesselErrorReason.Unsupported, "This VM has no network device.");
        }
        if (_config.NetworkBackend == NetworkBackend.Passt)
        {
            throw new VesselException(VesselErrorReason.Unsupported, "This VM's network is served by passt, which cannot add a port forward at run time.");
        }
        string rule = FormattableString.Invariant($"tcp:127.0.0.1:{hostPort}-{NetworkConfig.GuestAddress}:{guestPort}");
        JsonNode? reply = await Qmp.ExecuteAsync("human-monitor-command", new JsonObject
        {
            ["command-line"] = $"hostfwd_add {NetworkConfig.NetdevId} {rule}",
        }, cancellationToken);
        string output = reply?.GetValue<string>().Trim() ?? string.Empty;
        if (output.Length == 0)
        {
            return true;
        }
        if (output.Contains("could not set up host forwarding rule", StringComparison.Ordinal))
        {
            return false;
        }
        throw new VesselException(VesselErrorReason.ToolFailed, $"QEMU refused the port forward {rule}: {output}");
    }

    public async Task SnapshotAsync(string stateFile, CancellationToken cancellationToken)
    {
        await Qmp.ExecuteAsync("stop", null, cancellationToken);
        await SetIgnoreSharedAsync(cancellationToken);
        // RAM in a shared memory file stays there (x-ignore-shared skips shared blocks only): the
        // stream holds device state only. Private or anonymous RAM goes into the stream.
        await Qmp.ExecuteAsync("migrate", new JsonObject { ["uri"] = "exec:cat > " + ShellQuote(stateFile) }, cancellationToken);
        await WaitMigrationAsync("snapshot", cancellationToken);
    }

    public async Task RestoreAsync(string stateFile, CancellationToken cancellationToken)
    {
        if (!_config.IncomingSnapshot)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "This VM booted normally; start it with IncomingSnapshot to restore a snapshot.");
        }
        if (!File.Exists(stateFile))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"Snapshot state {stateFile} does not exist.");
        }
        await SetIgnoreSharedAsync(cancellationToken);
        await Qmp.ExecuteAsync("migrate-incoming", new JsonObject { ["uri"] = "exec:cat " + ShellQuote(stateFile) }, cancellationToken);
        await WaitMigrationAsync("restore", cancellationToken);
        // Without -S QEMU resumes by itself when the state is loaded; cont covers a paused one.
        string? state = null;
        for (int i = 0; i < 2000; i++)
        {
            JsonNode? status = await Qmp.ExecuteAsync("query-status", null, cancellationToken);
            state = status?["status"]?.GetValue<string>();
            if (state == "running")
            {
                return;
            }
            if (state is "paused" or "prelaunch" && i > 0)
            {
                await Qmp.ExecuteAsync("cont", null, cancellationToken);
            }
            await Task.Delay(TimeSpan.FromMilliseconds(5), cancellationToken);
        }
        throw new VesselException(VesselErrorReason.Timeout, $"QEMU loaded the snapshot {stateFile} but the VM did not start running (state '{state}').");
    }

    private Task SetIgnoreSharedAsync(CancellationToken cancellationToken) => Qmp.ExecuteAsync("migrate-set-capabilities", new JsonObject
    {
        ["capabilities"] = new JsonArray(new JsonObject { ["capability"] = "x-ignore-shared", ["state"] = true }),
    }, cancellationToken);

    private async Task WaitMigrationAsync(string what, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (_process.Exited.IsCompleted)
            {
                throw new VesselException(VesselErrorReason.ToolFailed, $"QEMU {ExitDescription} during the {what}: {StandardError.Trim()}");
            }
            JsonNode? info = await Qmp.ExecuteAsync("query-migrate", null, cancellationToken);
            string? status = info?["status"]?.GetValue<string>();
            switch (status)
            {
                case "completed":
                    return;
                case "failed" or "cancelled":
                    throw new VesselException(VesselErrorReason.ToolFailed, $"QEMU's {what} {status}: {info?["error-desc"]?.GetValue<string>() ?? StandardError.Trim()}");
                default:
                    await Task.Delay(TimeSpan.FromMilliseconds(2), cancellationToken);
                    break;
            }
        }
    }

    /// <summary>QEMU runs exec: migration URIs with /bin/sh -c.</summary>
    private static string ShellQuote(string path)
    {
        if (path.Contains('\'', StringComparison.Ordinal))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Snapshot path {path} contains a single quote.");
        }
        return "'" + path + "'";
    }

    private async Task<bool> WaitExitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await _process.Exited.WaitAsync(timeout, cancellationToken);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        try
        {
            await StopAsync(TimeSpan.Zero, CancellationToken.None);
        }
        finally
        {
            if (_qmp is not null)
            {
                await _qmp.DisposeAsync();
            }
            await _process.DisposeAsync();
            if (_passt is not null)
            {
                await _passt.DisposeAsync();
            }
        }
    }
}
