using Vessel.Agent;
using Vessel.Agent.Protocol;
using Vessel.Common;
using Vessel.Rootfs;
using Vessel.Vmm;

namespace Vessel.Sandboxes;

/// <summary>
/// A running microVM with its agent. Owns the VM, the agent connection and its
/// <see cref="SandboxParts"/> (the disk, the working directory); disposal (or
/// <see cref="KillAsync"/>, or the timeout) releases them all.
/// </summary>
public sealed partial class Sandbox : IAsyncDisposable
{
    private readonly string _token;
    private readonly VmConfig _config;
    private readonly IVirtualMachine _vm;
    private readonly SemaphoreSlim _stopLock = new(1, 1);
    private readonly CancellationTokenSource _lifetime = new();
    private readonly SandboxParts _parts;
    private AgentClient _agent;
    private bool _stopped;

    internal Sandbox(string id, string workDirectory, string token, VmConfig config, IVirtualMachine vm, AgentClient agent, SandboxTimings timings, SandboxParts parts)
    {
        Id = id;
        WorkDirectory = workDirectory;
        _token = token;
        _config = config;
        _vm = vm;
        _agent = agent;
        Timings = timings;
        _parts = parts;
    }

    public string Id { get; }

    public string WorkDirectory { get; }

    public SandboxTimings Timings { get; }

    /// <summary>For a pod (<see cref="SandboxManager.CreatePodAsync"/>): its containers; null for a sandbox on one rootfs.</summary>
    public PodInfo? Pod { get; internal set; }

    public IVirtualMachine VirtualMachine => _vm;

    /// <summary>Bytes of the template's memory fetched from the bucket for this sandbox (0 when its memory is a local file).</summary>
    public long RemoteMemoryFetchedBytes => _parts.Memory?.FetchedBytes ?? 0;

    /// <summary>The current agent connection (replaced by <see cref="ReconnectAsync"/>).</summary>
    public AgentClient Agent => _agent;

    /// <summary>Cancelled when the sandbox is killed or its timeout fires.</summary>
    public CancellationToken Killed => _lifetime.Token;

    /// <summary>
    /// Makes <paramref name="guestPort"/> (a TCP port a guest program listens on, on any address)
    /// reachable from the host at the returned 127.0.0.1 endpoint, until the sandbox stops. Other
    /// sandboxes cannot reach it unless their network is outbound (see docs/ARCHITECTURE.md, Network).
    /// </summary>
    public async Task<System.Net.IPEndPoint> ForwardPortAsync(int guestPort, CancellationToken cancellationToken)
    {
        if (guestPort is < 1 or > 65535)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Port {guestPort} is not a TCP port (1-65535).");
        }
        if (_vm is not QemuVm qemu)
        {
            throw new VesselException(VesselErrorReason.Unsupported, $"Sandbox {Id}: port forwarding needs the QEMU driver.");
        }
        for (int attempt = 0; attempt < 5; attempt++)
        {
            // The kernel picks a free port; another process may take it before QEMU binds it, hence the retries.
            int hostPort;
            using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
            {
                probe.Start();
                hostPort = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
            }
            if (await qemu.TryAddHostForwardAsync(hostPort, guestPort, cancellationToken))
            {
                return new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, hostPort);
            }
        }
        throw new VesselException(VesselErrorReason.Unavailable, $"Sandbox {Id}: no free host port for guest port {guestPort} after 5 tries.");
    }

    /// <summary>Runs a command, streaming its output; returns how it ended.</summary>
    public async Task<ExitStatus> ExecAsync(ExecRequest request, Stream? stdin, Stream? stdout, Stream? stderr, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _lifetime.Token);
        using ExecSession session = await _agent.StartAsync(request with { Stdin = stdin is not null }, linked.Token);
        Task pumpIn = Task.CompletedTask;
        if (stdin is not null)
        {
            pumpIn = Task.Run(async () =>
            {
                byte[] buffer = new byte[MuxConnection.MaxDataChunk];
                int n;
                try
                {
                    while ((n = await stdin.ReadAsync(buffer, linked.Token)) > 0)
                    {
                        await session.WriteStdinAsync(buffer.AsMemory(0, n), linked.Token);
                    }
                    await session.CloseStdinAsync(linked.Token);
                }
                catch (IOException)
                {
                    // The process ended first.
                }
            }, linked.Token);
        }
        try
        {
            return await session.WaitAsync(stdout, stderr, linked.Token);
        }
        catch (OperationCanceledException) when (!_lifetime.IsCancellationRequested)
        {
            // The caller gave up: do not leave the process running in the guest.
            try
            {
                await session.SignalAsync(9, CancellationToken.None);
            }
            catch (IOException)
            {
            }
            throw;
        }
        finally
        {
            if (!pumpIn.IsCompleted)
            {
                await Task.WhenAny(pumpIn, Task.Delay(100, CancellationToken.None));
            }
        }
    }

    /// <summary>Drops the agent connection and opens a new one (what a snapshot restore needs); processes keep running.</summary>
    public async Task ReconnectAsync(CancellationToken cancellationToken)
    {
        await _agent.DisposeAsync();
        _agent = await AgentClient.ConnectAsync(_config.ControlSocketPath, _token, TimeSpan.FromSeconds(30), cancellationToken);
    }

    /// <summary>Sets the guest's wall clock to the host's now: after anything that paused the VM (a resume, a restore).</summary>
    public Task SyncClockAsync(CancellationToken cancellationToken) => _agent.SetTimeAsync(DateTimeOffset.UtcNow, cancellationToken);

    internal void KillAfter(TimeSpan lifetime)
    {
        _ = Task.Run(async () =>
        {
            try
            {
                await Task.Delay(lifetime, _lifetime.Token);
                await KillAsync();
            }
            catch (OperationCanceledException)
            {
            }
        });
    }

    /// <summary>
    /// Flushes the guest's writes to its disk, pauses it and saves it as a snapshot in
    /// <paramref name="directory"/> (created; must not exist): its RAM file, device state and
    /// <see cref="SandboxSnapshot"/>. The sandbox then stops (its disk holds exactly what the
    /// snapshot expects, so the caller stores the disk next). A failure leaves no directory.
    /// </summary>
    public async Task<SandboxSnapshot> SnapshotAndStopAsync(string directory, CancellationToken cancellationToken)
    {
        if (_config.MemoryBackendFile is null || !_config.MemoryBackendShared)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Sandbox {Id} was not created snapshottable (SandboxOptions.Snapshottable).");
        }
        string partial = StartPartial(directory, "Snapshot");
        try
        {
            // Every dirty page of the guest reaches the disk before its state is frozen.
            using var sync = new MemoryStream();
            ExitStatus synced = await ExecAsync(new ExecRequest([Provisioning.GuestBusybox, "sync"]), null, sync, sync, cancellationToken);
            if (synced.ExitCode != 0)
            {
                throw new VesselException(VesselErrorReason.ToolFailed, $"sync in sandbox {Id} exited with {synced.ExitCode}: {System.Text.Encoding.UTF8.GetString(sync.ToArray())}");
            }
            // The snapshot holds an agent with no host attached: a restore connects like a reconnect.
            await _agent.DisposeAsync();
            await Task.Delay(TimeSpan.FromMilliseconds(100), cancellationToken);
            await _vm.SnapshotAsync(Path.Combine(partial, SandboxSnapshot.StateFile), cancellationToken);
            await _vm.StopAsync(TimeSpan.Zero, cancellationToken);
            File.Move(_config.MemoryBackendFile, Path.Combine(partial, SandboxSnapshot.MemoryFile));
            var snapshot = new SandboxSnapshot(SandboxSnapshot.CurrentVersion, _config.MemoryMiB, _config.Vcpus, _parts.KitId, _token, DateTimeOffset.UtcNow);
            await snapshot.WriteAsync(partial, cancellationToken);
            Directory.Move(partial, directory);
            await KillAsync();
            return snapshot;
        }
        catch (Exception failure)
        {
            var cleanup = new CleanupScope();
            cleanup.Add("partial snapshot directory", () => SandboxManager.DeleteDirectory(partial));
            cleanup.Add("sandbox", async () => await KillAsync());
            await cleanup.RunAfterFailureAsync(failure);
            throw;
        }
    }

    /// <summary>Stops the VM at once (no guest shutdown) and removes the sandbox's directory.</summary>
    public Task KillAsync() => StopAsync(graceful: false);

    /// <summary>Asks the agent to sync and power off, then stops the VM; removes the sandbox's directory.</summary>
    public Task StopAsync() => StopAsync(graceful: true);

    private async Task StopAsync(bool graceful)
    {
        await _stopLock.WaitAsync();
        try
        {
            if (_stopped)
            {
                return;
            }
            _stopped = true;
            await _lifetime.CancelAsync();
            TimeSpan grace = TimeSpan.Zero;
            if (graceful && !_vm.Exited.IsCompleted)
            {
                try
                {
                    using var shutdownTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    await _agent.ShutdownAsync(shutdownTimeout.Token);
                    grace = TimeSpan.FromSeconds(10);
                }
                catch (Exception e) when (e is VesselException or OperationCanceledException or IOException)
                {
                    // The agent is gone or hung: the forceful path below still stops the VM.
                }
            }
            await _agent.DisposeAsync();
            try
            {
                await _vm.StopAsync(grace, CancellationToken.None);
            }
            finally
            {
                try
                {
                    await _vm.DisposeAsync();
                }
                finally
                {
                    await _parts.Release.RunAsync(); // the VM that mapped the memory view and read the disk is gone
                }
            }
        }
        finally
        {
            _stopLock.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(graceful: true);
        _lifetime.Dispose();
    }
}
