using System.Collections.Concurrent;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using Vessel.Agent;
using Vessel.Agent.Protocol;
using Vessel.Containerd;
using Vessel.Containerd.Api.Events;
using Vessel.Containerd.Api.Task;
using Vessel.Containerd.Ttrpc;
using Vessel.Guest;
using Vessel.Sandboxes;
using Vessel.Vmm;
using StatusCode = Grpc.Core.StatusCode;
using TaskStatus = Vessel.Containerd.Api.Types.Task.Status;

namespace Vessel.Shim;

/// <summary>
/// containerd's task API (<c>containerd.task.v2.Task</c>, api/runtime/task/v2/shim.proto) for
/// one container run in one Vessel microVM. Create mounts the rootfs, writes it into an ext4
/// image and boots the VM (the init process is created, not started); Start, Exec, Kill, Wait,
/// CloseIO, ResizePty, State, Pids, Delete, Connect and Shutdown act on processes the guest agent
/// runs (a terminal process, ctr -t, on a pseudo-terminal in the guest: its output goes to the
/// stdout FIFO, stderr stays empty). Pause, Resume, Checkpoint, Update and Stats are not registered: the server answers
/// UNIMPLEMENTED, which containerd reports as "not implemented". Events go out in containerd's
/// order: create, start, exec-added, exec-started, exit, delete.
/// </summary>
/// <param name="address">containerd's gRPC socket (the shim's -address): boot artifacts are fetched through it.</param>
/// <param name="ns">The containerd namespace of the task.</param>
internal sealed partial class TaskService(ShimEvents events, string home, string address, string ns, ILogger logger) : IAsyncDisposable
{
    public const string ServiceName = "containerd.task.v2.Task";

    private readonly ShimEvents _events = events;
    private readonly ILogger _logger = logger;
    private readonly string _home = home;
    private readonly string _address = address;
    private readonly string _namespace = ns;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly ConcurrentDictionary<string, ShimProcess> _execs = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _shutdown = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private string _id = string.Empty;
    private string _bundle = string.Empty;
    private Sandbox? _sandbox;
    private ShimProcess? _init;
    private uint _vmmPid;
    private bool _tornDown;

    /// <summary>Completes when containerd asked the shim to exit (Shutdown), or a signal did.</summary>
    public Task ShutdownRequested => _shutdown.Task;

    public void RequestShutdown() => _shutdown.TrySetResult();

    public void Register(TtrpcServer server)
    {
        server.Register(ServiceName, "Create", CreateTaskRequest.Parser, async (r, ct) => await CreateAsync(r, ct));
        server.Register(ServiceName, "Start", StartRequest.Parser, async (r, ct) => await StartAsync(r, ct));
        server.Register(ServiceName, "Delete", DeleteRequest.Parser, async (r, ct) => await DeleteAsync(r, ct));
        server.Register(ServiceName, "Exec", ExecProcessRequest.Parser, async (r, ct) => await ExecAsync(r, ct));
        server.Register(ServiceName, "State", StateRequest.Parser, (r, _) => Task.FromResult<IMessage>(State(r)));
        server.Register(ServiceName, "Pids", PidsRequest.Parser, (r, _) => Task.FromResult<IMessage>(Pids(r)));
        server.Register(ServiceName, "Kill", KillRequest.Parser, async (r, ct) => await KillAsync(r, ct));
        server.Register(ServiceName, "Wait", WaitRequest.Parser, async (r, ct) => await WaitAsync(r, ct));
        server.Register(ServiceName, "CloseIO", CloseIORequest.Parser, async (r, _) =>
        {
            if (r.Stdin)
            {
                await Find(r.Id, r.ExecId).CloseIOAsync();
            }
            return new Empty();
        });
        server.Register(ServiceName, "ResizePty", ResizePtyRequest.Parser, async (r, ct) =>
        {
            await Find(r.Id, r.ExecId).ResizeAsync(new TerminalSize((ushort)Math.Min(r.Height, ushort.MaxValue), (ushort)Math.Min(r.Width, ushort.MaxValue)), ct);
            return new Empty();
        });
        server.Register(ServiceName, "Connect", ConnectRequest.Parser, (r, _) => Task.FromResult<IMessage>(
            new ConnectResponse { ShimPid = (uint)Environment.ProcessId, TaskPid = _vmmPid, Version = "vessel" }));
        server.Register(ServiceName, "Shutdown", ShutdownRequest.Parser, (r, _) =>
        {
            // As containerd's shims: stay while a task is not deleted, unless told to go now.
            if (r.Now || _init is null || _tornDown)
            {
                RequestShutdown();
            }
            return Task.FromResult<IMessage>(new Empty());
        });
    }

    private async Task<CreateTaskResponse> CreateAsync(CreateTaskRequest request, CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            if (_init is not null)
            {
                throw new TtrpcStatusException(StatusCode.AlreadyExists, $"this shim already runs task {_id}");
            }
            if (request.Checkpoint.Length > 0)
            {
                throw new TtrpcStatusException(StatusCode.Unimplemented, "Vessel cannot restore a checkpoint");
            }
            (OciProcess process, string? hostname, string specRoot) = OciProcess.ReadBundle(request.Bundle);
            // Checked before anything is made: a mount the VM cannot honour fails Create naming it.
            MountPlan mounts = ContainerMounts.Plan(OciMount.ReadBundle(request.Bundle));
            _id = request.Id;
            _bundle = request.Bundle;
            try
            {
                await BootAsync(request, hostname, specRoot, mounts, cancellationToken);
            }
            catch
            {
                await TeardownAsync();
                throw;
            }
            _init = new ShimProcess(string.Empty, process, request.Stdin, request.Stdout, request.Stderr, request.Terminal || process.Terminal);
            var created = new TaskCreate
            {
                ContainerId = _id,
                Bundle = _bundle,
                Io = new TaskIO { Stdin = request.Stdin, Stdout = request.Stdout, Stderr = request.Stderr, Terminal = request.Terminal },
                Pid = _vmmPid,
            };
            created.Rootfs.AddRange(request.Rootfs);
            await _events.PublishAsync("/tasks/create", created);
            return new CreateTaskResponse { Pid = _vmmPid };
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// Mounts the rootfs, writes the VM's image from it and boots the VM; the state file is written
    /// before each step. With no rootfs mounts the spec's root path is the tree (runc's rule).
    /// </summary>
    private async Task BootAsync(CreateTaskRequest request, string? hostname, string specRoot, MountPlan mounts, CancellationToken cancellationToken)
    {
        string rootfs = request.Rootfs.Count > 0 ? Path.Combine(_bundle, "rootfs") : specRoot;
        if (request.Rootfs.Count == 0 && !Directory.Exists(rootfs))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"the spec's root {rootfs} is not a directory and containerd passed no rootfs mounts.");
        }
        string image = Path.Combine(_bundle, "vessel-rootfs.ext4");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        ShimConfig config = ShimConfig.Load();
        var state = new ShimState { Home = _home, RootfsMounted = request.Rootfs.Count > 0, RootfsImage = image, BootArtifacts = config.BootArtifacts };
        state.Write(_bundle);
        ContainerRootfs.Mount(request.Rootfs, rootfs);
        LogStep(_logger, _id, "rootfs mounted; writing the VM's image");
        await ContainerRootfs.WriteImageAsync(rootfs, image, ContainerRootfs.Hostname(hostname, _id), mounts.Files, cancellationToken);
        TimeSpan imageWritten = clock.Elapsed;
        GuestKit kit = await new KitBuilder(new KitOptions()).EnsureAsync(cancellationToken);
        TimeSpan kitReady = clock.Elapsed;
        // Seed 002: the image's own kernel (initrd, config) when enabled and named; BootArtifacts records each step in the bundle.
        BootOverride? boot = await ShimBoot.PrepareAsync(config, _address, _namespace, _id, _bundle, kit, cancellationToken);
        if (boot is not null)
        {
            LogStep(_logger, _id, boot.Summary);
        }
        var manager = new SandboxManager(_home, kit);
        LogStep(_logger, _id, "booting the VM");
        _sandbox = await manager.CreateAsync(new SandboxOptions
        {
            RootfsPath = image,
            CopyRootfs = false,
            KernelPath = boot?.KernelPath,
            InitramfsPath = boot?.InitramfsPath,
            ExtraKernelParameters = boot?.KernelParameters ?? [],
        }, cancellationToken);
        _vmmPid = _sandbox.VirtualMachine is QemuVm qemu ? (uint)qemu.Pid : 0;
        (state with { SandboxDirectory = _sandbox.WorkDirectory, VmmPid = (int)_vmmPid }).Write(_bundle);
        await MountTmpfsAsync(_sandbox, mounts.Tmpfs, cancellationToken);
        LogStep(_logger, _id, $"VM up (sandbox {_sandbox.Id}, VMM pid {_vmmPid})");
        // One line for bench/shim/bench.sh: where Create's time went.
        LogStep(_logger, _id, string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"timings: rootfs mount and ext4 image {imageWritten.TotalSeconds:F3} s, kit check {(kitReady - imageWritten).TotalSeconds:F3} s, VMM started {_sandbox.Timings.VmmStarted.TotalSeconds:F3} s, agent ready {_sandbox.Timings.AgentReady.TotalSeconds:F3} s, create total {clock.Elapsed.TotalSeconds:F3} s"));
    }

    /// <summary>The spec's tmpfs mounts, made in the guest (as root, Vessel's busybox) before any process of the task runs.</summary>
    private static async Task MountTmpfsAsync(Sandbox sandbox, IReadOnlyList<OciMount> tmpfs, CancellationToken cancellationToken)
    {
        foreach (OciMount m in tmpfs)
        {
            using var output = new MemoryStream();
            ExitStatus status = await sandbox.ExecAsync(new ExecRequest(ContainerMounts.TmpfsCommand(m)) { User = "0:0" }, null, output, output, cancellationToken);
            if (status.ExitCode != 0)
            {
                throw new VesselException(VesselErrorReason.ToolFailed,
                    $"mount {m.Destination} (tmpfs, {string.Join(',', m.Options)}) failed in the guest with {status.ExitCode}: {System.Text.Encoding.UTF8.GetString(output.ToArray()).Trim()}");
            }
        }
    }

    private async Task<StartResponse> StartAsync(StartRequest request, CancellationToken cancellationToken)
    {
        ShimProcess p = Find(request.Id, request.ExecId);
        await _lock.WaitAsync(cancellationToken);
        try
        {
            if (p.Started)
            {
                throw new TtrpcStatusException(StatusCode.FailedPrecondition, $"{p.Describe()} of {_id} was already started");
            }
            Sandbox sandbox = _sandbox ?? throw new TtrpcStatusException(StatusCode.FailedPrecondition, $"task {_id} has no VM");
            await p.StartAsync(sandbox, OnExitAsync, cancellationToken);
            try
            {
                IMessage started = p.ExecId.Length == 0
                    ? new TaskStart { ContainerId = _id, Pid = (uint)p.Pid }
                    : new TaskExecStarted { ContainerId = _id, ExecId = p.ExecId, Pid = (uint)p.Pid };
                await _events.PublishAsync(p.ExecId.Length == 0 ? "/tasks/start" : "/tasks/exec-started", started);
            }
            finally
            {
                p.StartPublished.TrySetResult();
            }
            return new StartResponse { Pid = (uint)p.Pid };
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task OnExitAsync(ShimProcess p, ShimExit exit)
    {
        await p.StartPublished.Task;
        await _events.PublishAsync("/tasks/exit", new TaskExit
        {
            ContainerId = _id,
            Id = p.ExecId.Length == 0 ? _id : p.ExecId,
            Pid = (uint)p.Pid,
            ExitStatus = exit.Status,
            ExitedAt = Timestamp.FromDateTimeOffset(exit.At),
        });
        if (ReferenceEquals(p, _init))
        {
            // As in a container whose init died: nothing else of it keeps running.
            foreach (ShimProcess e in _execs.Values.Where(e => e.Started && !e.Exited.IsCompleted))
            {
                try
                {
                    await e.SignalAsync(9, CancellationToken.None);
                }
                catch (Exception ex) when (ex is IOException or TtrpcStatusException or ObjectDisposedException)
                {
                }
            }
        }
    }

    private async Task<DeleteResponse> DeleteAsync(DeleteRequest request, CancellationToken cancellationToken)
    {
        ShimProcess p = Find(request.Id, request.ExecId);
        if (p.Started && !p.Exited.IsCompleted)
        {
            throw new TtrpcStatusException(StatusCode.FailedPrecondition, $"{p.Describe()} of {_id} is running: kill it first");
        }
        p.EndUnstarted(0);
        ShimExit exit = await p.Exited;
        var response = new DeleteResponse { Pid = (uint)p.Pid, ExitStatus = exit.Status, ExitedAt = Timestamp.FromDateTimeOffset(exit.At) };
        if (p.ExecId.Length > 0)
        {
            _execs.TryRemove(p.ExecId, out _);
            return response;
        }
        await _lock.WaitAsync(cancellationToken);
        try
        {
            await TeardownAsync();
        }
        finally
        {
            _lock.Release();
        }
        await _events.PublishAsync("/tasks/delete", new TaskDelete
        {
            ContainerId = _id,
            Id = _id,
            Pid = response.Pid,
            ExitStatus = exit.Status,
            ExitedAt = response.ExitedAt,
        });
        return response;
    }

    private async Task<Empty> ExecAsync(ExecProcessRequest request, CancellationToken cancellationToken)
    {
        if (_init is null || request.Id != _id || _tornDown)
        {
            throw new TtrpcStatusException(StatusCode.NotFound, $"task {request.Id} not found");
        }
        if (request.ExecId.Length == 0)
        {
            throw new TtrpcStatusException(StatusCode.InvalidArgument, "an exec needs an exec id");
        }
        OciProcess process = OciProcess.Parse((request.Spec?.Value ?? ByteString.Empty).Span, $"exec {request.ExecId}");
        var p = new ShimProcess(request.ExecId, process, request.Stdin, request.Stdout, request.Stderr, request.Terminal || process.Terminal);
        if (!_execs.TryAdd(request.ExecId, p))
        {
            throw new TtrpcStatusException(StatusCode.AlreadyExists, $"exec {request.ExecId} of {_id} already exists");
        }
        await _events.PublishAsync("/tasks/exec-added", new TaskExecAdded { ContainerId = _id, ExecId = request.ExecId });
        cancellationToken.ThrowIfCancellationRequested();
        return new Empty();
    }

    private StateResponse State(StateRequest request)
    {
        ShimProcess p = Find(request.Id, request.ExecId);
        var response = new StateResponse
        {
            Id = p.ExecId.Length == 0 ? _id : p.ExecId,
            Bundle = _bundle,
            Pid = (uint)p.Pid,
            Stdin = p.Stdin,
            Stdout = p.Stdout,
            Stderr = p.Stderr,
            Terminal = p.Terminal,
            ExecId = p.ExecId,
            Status = !p.Started ? TaskStatus.Created : p.Exited.IsCompleted ? TaskStatus.Stopped : TaskStatus.Running,
        };
        if (p.Exited.IsCompletedSuccessfully)
        {
            response.ExitStatus = p.Exited.Result.Status;
            response.ExitedAt = Timestamp.FromDateTimeOffset(p.Exited.Result.At);
        }
        return response;
    }

    private PidsResponse Pids(PidsRequest request)
    {
        ShimProcess init = Find(request.Id, string.Empty);
        var response = new PidsResponse();
        foreach (ShimProcess p in _execs.Values.Prepend(init).Where(p => p.Started && !p.Exited.IsCompleted))
        {
            response.Processes.Add(new Vessel.Containerd.Api.Types.Task.ProcessInfo { Pid = (uint)p.Pid });
        }
        return response;
    }

    private async Task<Empty> KillAsync(KillRequest request, CancellationToken cancellationToken)
    {
        ShimProcess p = Find(request.Id, request.ExecId);
        if (!p.Started && request.Signal is 9 or 15)
        {
            // Killed before Start: it ends as a signalled process would.
            if (p.EndUnstarted(128 + request.Signal))
            {
                p.StartPublished.TrySetResult();
                await OnExitAsync(p, await p.Exited);
            }
            return new Empty();
        }
        if (!p.Started)
        {
            throw new TtrpcStatusException(StatusCode.FailedPrecondition, $"{p.Describe()} of {_id} is not started");
        }
        if (request.All && p.ExecId.Length == 0)
        {
            foreach (ShimProcess e in _execs.Values.Where(e => e.Started && !e.Exited.IsCompleted))
            {
                await e.SignalAsync((int)request.Signal, cancellationToken);
            }
        }
        await p.SignalAsync((int)request.Signal, cancellationToken);
        return new Empty();
    }

    private async Task<WaitResponse> WaitAsync(WaitRequest request, CancellationToken cancellationToken)
    {
        ShimExit exit = await Find(request.Id, request.ExecId).Exited.WaitAsync(cancellationToken);
        return new WaitResponse { ExitStatus = exit.Status, ExitedAt = Timestamp.FromDateTimeOffset(exit.At) };
    }

    private ShimProcess Find(string id, string execId)
    {
        if (_init is null || id != _id)
        {
            throw new TtrpcStatusException(StatusCode.NotFound, $"task {id} not found");
        }
        if (execId.Length == 0)
        {
            return _init;
        }
        return _execs.TryGetValue(execId, out ShimProcess? p) ? p
            : throw new TtrpcStatusException(StatusCode.NotFound, $"exec {execId} of task {id} not found");
    }

    /// <summary>Stops the VM, unmounts the rootfs, removes the image and the state file; idempotent.</summary>
    private async Task TeardownAsync()
    {
        if (_tornDown || _bundle.Length == 0)
        {
            return;
        }
        _tornDown = true;
        var errors = new List<Exception>();
        if (_sandbox is not null)
        {
            try
            {
                await _sandbox.KillAsync();
            }
            catch (Exception e)
            {
                errors.Add(e);
            }
        }
        try
        {
            await CleanupAsync(_bundle);
        }
        catch (Exception e)
        {
            errors.Add(e);
        }
        if (errors.Count > 0)
        {
            throw new AggregateException($"cleaning up task {_id} failed", errors);
        }
    }

    /// <summary>
    /// Releases the boot artifacts (binds, view mount, view, lease), unmounts BUNDLE/rootfs and
    /// removes what the shim wrote in the bundle (also <c>delete</c> after a crash). The VM must be gone.
    /// </summary>
    public static async Task CleanupAsync(string bundle)
    {
        using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            await ShimBoot.CleanupAsync(bundle, deadline.Token);
        }
        LinuxMount.UnmountAll(Path.Combine(bundle, "rootfs"));
        File.Delete(Path.Combine(bundle, "vessel-rootfs.ext4"));
        ShimState.Remove(bundle);
    }

    public async ValueTask DisposeAsync()
    {
        await _lock.WaitAsync();
        try
        {
            await TeardownAsync();
        }
        finally
        {
            _lock.Release();
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "task {Id}: {Step}")]
    private static partial void LogStep(ILogger logger, string id, string step);
}
