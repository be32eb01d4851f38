using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Vessel.Agent.Protocol;

namespace Vessel.Agent;

/// <summary>
/// The containers of a pod sandbox. The guest's /init mounted each image's read-only disk at
/// <c>/vessel/lowers/ID</c>; a container gets <c>/vessel/pods/NAME_ovl/</c> with a tmpfs
/// (<c>rw</c>, capped at its upper size, holding the overlay's upper and work directories and the
/// container's log) and the overlay root (<c>root</c>), both mounted in the agent's namespace, so
/// the agent serves the container's files even after its process ended. Its first process runs in
/// new mount, PID, UTS and IPC namespaces (<see cref="ContainerInit"/>); an exec enters them.
/// </summary>
internal sealed class Pod
{
    public const string LowersDirectory = "/vessel/lowers";
    public const string PodsDirectory = "/vessel/pods";

    private readonly ConcurrentDictionary<string, Container> _containers = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public IReadOnlyList<ContainerStatus> List() =>
        _containers.Values.OrderBy(c => c.Name, StringComparer.Ordinal).Select(c => c.Status()).ToList();

    public Container Get(string name) =>
        _containers.TryGetValue(name, out Container? c)
            ? c
            : throw new AgentErrorException(LibC.Enoent, $"no container '{name}' in this sandbox (containers: {(_containers.IsEmpty ? "none" : string.Join(", ", _containers.Keys.Order(StringComparer.Ordinal)))})");

    public void KillAll()
    {
        foreach (Container c in _containers.Values)
        {
            c.Kill();
        }
    }

    public Container Start(ContainerStartRequest request)
    {
        if (ContainerNames.Problem(request.Name) is { } problem)
        {
            throw new AgentErrorException(LibC.Einval, problem);
        }
        if (request.Arguments.Count == 0 || request.Arguments[0].Length == 0)
        {
            throw new AgentErrorException(LibC.Einval, $"container {request.Name}: no command (the image has no entrypoint or cmd, and the request gave none)");
        }
        if (request.Lower.Length == 0 || !request.Lower.All(char.IsAsciiHexDigitLower))
        {
            throw new AgentErrorException(LibC.Einval, $"container {request.Name}: bad lower id '{request.Lower}'");
        }
        string lower = Path.Combine(LowersDirectory, request.Lower);
        if (!Directory.Exists(lower))
        {
            throw new AgentErrorException(LibC.Enoent, $"container {request.Name}: the image disk {request.Lower} is not mounted at {lower}");
        }
        lock (_gate)
        {
            if (_containers.ContainsKey(request.Name))
            {
                throw new AgentErrorException(LibC.Eexist, $"container '{request.Name}' already exists");
            }
            if (_containers.Count >= ContainerNames.MaxContainers)
            {
                throw new AgentErrorException(LibC.Einval, $"a sandbox holds at most {ContainerNames.MaxContainers} containers");
            }
            Container c = Container.Start(request, lower);
            _containers[request.Name] = c;
            return c;
        }
    }
}

/// <summary>One container: its overlay root and its first process.</summary>
internal sealed class Container
{
    private readonly Process _init;
    private readonly string _directory;
    private readonly ContainerStartRequest _request;

    private Container(string directory, RootFs root, Process init, ContainerStartRequest request)
    {
        _request = request;
        _directory = directory;
        Root = root;
        _init = init;
        Pid = init.Id;
    }

    public string Name => _request.Name;

    public RootFs Root { get; }

    public int Pid { get; }

    /// <summary>
    /// An exec into this container, like <c>docker exec</c>: the container's environment with the
    /// request's on top, and its working directory and user unless the request names others.
    /// </summary>
    public ExecStartRequest ForExec(ExecStartRequest request) => request with
    {
        Environment = [.. _request.Environment, .. request.Environment],
        WorkingDirectory = request.WorkingDirectory.Length > 0 ? request.WorkingDirectory : _request.WorkingDirectory,
        User = request.User.Length > 0 ? request.User : _request.User,
    };

    public ContainerStatus Status()
    {
        if (!_init.HasExited)
        {
            return new ContainerStatus(Name, Pid, true, 0, 0);
        }
        int code = _init.ExitCode;
        return new ContainerStatus(Name, Pid, false, code, code > 128 && code < 128 + 65 ? code - 128 : 0);
    }

    public void Kill()
    {
        if (!_init.HasExited)
        {
            // SIGKILL to PID 1 of the namespace ends every process in it.
            Native.Kill(Pid, 9);
        }
    }

    /// <summary>
    /// Joins the calling thread to the container's namespaces (after unshare(CLONE_FS), which
    /// setns of a mount namespace requires); a fork from this thread lands in the container.
    /// </summary>
    public void EnterNamespaces()
    {
        foreach (string ns in (string[])["ipc", "uts", "pid", "mnt"])
        {
            int fd = LibC.Open($"/proc/{Pid.ToString(CultureInfo.InvariantCulture)}/ns/{ns}", LibC.ORdonly | LibC.OCloexec, 0);
            if (fd < 0 || _init.HasExited)
            {
                if (fd >= 0)
                {
                    LibC.Close(fd);
                }
                ContainerStatus s = Status();
                throw new AgentErrorException(3 /* ESRCH */, $"container '{Name}' has exited (code {s.ExitCode}): nothing to exec into");
            }
            try
            {
                Native.Check(Native.Setns(fd, 0), $"setns {ns} of container {Name}");
            }
            finally
            {
                LibC.Close(fd);
            }
        }
    }

    public static Container Start(ContainerStartRequest request, string lower)
    {
        string directory = Path.Combine(Pod.PodsDirectory, ContainerNames.Derived(request.Name));
        string rw = Path.Combine(directory, "rw");
        string root = Path.Combine(directory, "root");
        var mounted = new List<string>();
        try
        {
            Directory.CreateDirectory(rw);
            Directory.CreateDirectory(root);
            string source = ContainerNames.Derived(request.Name);
            uint upper = Math.Max(1, request.UpperMiB);
            Native.Check(LibC.Mount(source, rw, "tmpfs", LibC.MsNosuid | LibC.MsNodev, $"size={upper.ToString(CultureInfo.InvariantCulture)}m,mode=0755"), $"mount the upper tmpfs of {request.Name}");
            mounted.Add(rw);
            Directory.CreateDirectory(Path.Combine(rw, "upper"));
            Directory.CreateDirectory(Path.Combine(rw, "work"));
            Native.Check(LibC.Mount(source, root, "overlay", 0, $"lowerdir={lower},upperdir={rw}/upper,workdir={rw}/work"), $"mount the overlay root of {request.Name}");
            mounted.Add(root);
            var rootFs = new RootFs(root);
            Process init = Spawn(request, rootFs, Path.Combine(rw, "console.log"));
            WaitForExec(init);
            return new Container(directory, rootFs, init, request);
        }
        catch
        {
            for (int i = mounted.Count - 1; i >= 0; i--)
            {
                LibC.Umount2(mounted[i], 2 /* MNT_DETACH */);
            }
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
            }
            throw;
        }
    }

    /// <summary>
    /// Waits until the container's init has set up its root (/proc, /sys, /dev, /tmp, the chroot)
    /// and exec'd the container's command, or has exited: an exec into the container that came
    /// earlier would find an empty /dev. The init runs this agent's executable until then.
    /// </summary>
    private static void WaitForExec(Process init)
    {
        string self = new FileInfo("/proc/self/exe").LinkTarget ?? string.Empty;
        string exe = $"/proc/{init.Id.ToString(CultureInfo.InvariantCulture)}/exe";
        long deadline = Environment.TickCount64 + 30_000;
        while (!init.HasExited && Environment.TickCount64 < deadline)
        {
            string? now;
            try
            {
                now = new FileInfo(exe).LinkTarget;
            }
            catch (IOException)
            {
                return; // gone between the checks: Status() reports its exit
            }
            if (now is not null && now != self)
            {
                return;
            }
            Thread.Sleep(2);
        }
    }

    /// <summary>The container's log (its first process's stdout and stderr), on its upper tmpfs.</summary>
    public string LogPath => Path.Combine(_directory, "rw", "console.log");

    private static Process Spawn(ContainerStartRequest request, RootFs rootFs, string log)
    {
        UserIds ids = UserIds.Resolve(rootFs, request.User);
        var psi = new ProcessStartInfo(Environment.ProcessPath ?? throw new AgentErrorException(LibC.Enoent, "the agent cannot find its own executable"))
        {
            UseShellExecute = false,
        };
        foreach (string a in ContainerInit.Arguments(rootFs.Root, log, request.WorkingDirectory, ids, request.Arguments))
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment.Clear();
        psi.Environment["PATH"] = AgentProcess.DefaultPath;
        psi.Environment["HOME"] = ids.Home;
        psi.Environment["HOSTNAME"] = request.Name;
        foreach (string kv in request.Environment)
        {
            int eq = kv.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new AgentErrorException(LibC.Einval, $"container {request.Name}: environment entry '{kv}' is not KEY=VALUE");
            }
            psi.Environment[kv[..eq]] = kv[(eq + 1)..];
        }
        // The namespaces are the spawning thread's only; its fork is PID 1 of the new PID namespace.
        return ThreadSpawn.Start("vessel-container", $"container {request.Name}", psi, () =>
        {
            Native.Check(Native.Unshare(Native.CloneFs | Native.CloneNewNs | Native.CloneNewPid | Native.CloneNewUts | Native.CloneNewIpc), "unshare namespaces");
            ContainerInit.SetHostname(request.Name);
        });
    }
}
