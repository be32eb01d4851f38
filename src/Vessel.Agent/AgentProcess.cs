using System.ComponentModel;
using System.Diagnostics;
using Vessel.Agent.Protocol;

namespace Vessel.Agent;

/// <summary>
/// One process the host started. It belongs to the agent, not to a connection: when the host
/// goes away its output simply stops being read (the pipe fills, the process blocks) and
/// resumes when a new session attaches, so nothing is lost and nothing is buffered without bound.
/// </summary>
internal sealed class AgentProcess
{
    public const string DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    private readonly Process _process;
    private readonly object _gate = new();
    private readonly CancellationTokenSource _exited = new();
    private readonly SemaphoreSlim _send = new(1, 1);
    private MuxStream? _sink;
    private PseudoTerminal? _terminal;
    private TaskCompletionSource<MuxStream> _sinkWaiter = NewWaiter();
    private TaskCompletionSource _attachment = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _exitDelivered;
    private int _signalSent;
    private volatile bool _timedOut;

    private AgentProcess(Process process)
    {
        _process = process;
        Pid = process.Id;
    }

    public int Pid { get; }

    /// <summary>Completes once the exit status has been delivered to a host.</summary>
    public Task Finished { get; private set; } = Task.CompletedTask;

    /// <param name="terminal">When set, the process runs on a new pseudo-terminal of this size (<see cref="TerminalExec"/>).</param>
    public static AgentProcess Start(RootFs rootFs, ExecStartRequest request, Action? enterNamespaces = null, TerminalSize? terminal = null)
    {
        if (request.Arguments.Count == 0 || request.Arguments[0].Length == 0)
        {
            throw new AgentErrorException(LibC.Einval, "exec: no command given");
        }
        UserIds ids = UserIds.Resolve(rootFs, request.User);
        var env = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["PATH"] = DefaultPath,
            ["HOME"] = ids.Home,
        };
        foreach (string kv in request.Environment)
        {
            int eq = kv.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new AgentErrorException(LibC.Einval, $"exec: environment entry '{kv}' is not KEY=VALUE");
            }
            env[kv[..eq]] = kv[(eq + 1)..];
        }
        string cwd = request.WorkingDirectory.Length == 0 ? "/" : request.WorkingDirectory;

        PseudoTerminal? pty = terminal is { } size ? new PseudoTerminal(rootFs.Root, size) : null;
        Process process;
        try
        {
            process = pty is null
                ? Spawn(ChrootedStart(request, env, cwd), rootFs.Root, ids, enterNamespaces, request.Arguments[0], env["PATH"])
                : Spawn(TerminalStart(pty, rootFs.Root, cwd, ids, request.Arguments, env), null, ids, enterNamespaces, null, null);
        }
        catch
        {
            pty?.Dispose();
            throw;
        }

        var p = new AgentProcess(process) { _terminal = pty };
        if (!request.Stdin || pty is not null)
        {
            process.StandardInput.Close();
        }
        if (request.TimeoutMilliseconds > 0)
        {
            _ = p.KillAfterAsync(TimeSpan.FromMilliseconds(request.TimeoutMilliseconds));
        }
        p.Finished = p.RunAsync();
        return p;
    }

    /// <summary>The process itself, started on a thread that chrooted (its working directory is inside the root).</summary>
    private static ProcessStartInfo ChrootedStart(ExecStartRequest request, Dictionary<string, string> env, string cwd)
    {
        var psi = NewStartInfo(env);
        psi.WorkingDirectory = cwd;
        for (int i = 1; i < request.Arguments.Count; i++)
        {
            psi.ArgumentList.Add(request.Arguments[i]);
        }
        return psi;
    }

    /// <summary>The agent's own executable as <see cref="TerminalExec"/>: it attaches the terminal, then chroots and execs.</summary>
    private static ProcessStartInfo TerminalStart(PseudoTerminal pty, string root, string cwd, UserIds ids, IReadOnlyList<string> command, Dictionary<string, string> env)
    {
        var psi = NewStartInfo(env);
        psi.FileName = Environment.ProcessPath ?? throw new AgentErrorException(LibC.Enoent, "exec: the agent cannot find its own executable for a terminal");
        foreach (string a in TerminalExec.Arguments(pty.SlavePath, root, cwd, ids, command))
        {
            psi.ArgumentList.Add(a);
        }
        return psi;
    }

    // Redirected, so the child never inherits the agent's own stdio; a terminal process puts its
    // terminal over them (what it wrote before, its own failure, still arrives as output).
    private static ProcessStartInfo NewStartInfo(Dictionary<string, string> env)
    {
        var psi = new ProcessStartInfo
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.Environment.Clear();
        foreach (var (k, v) in env)
        {
            psi.Environment[k] = v;
        }
        return psi;
    }

    /// <summary>
    /// Starts <paramref name="psi"/> from a thread of its own. chroot and the credentials change
    /// apply to that thread only (unshare(CLONE_FS) and raw set*id syscalls) and the fork inherits
    /// them; with no <paramref name="chrootTo"/> the thread keeps the agent's root and user (the
    /// terminal step does both itself). Everything that touches the agent's own files (assemblies
    /// loaded on first use, the executable lookup's code) happens before the chroot.
    /// </summary>
    private static Process Spawn(ProcessStartInfo psi, string? chrootTo, UserIds ids, Action? enterNamespaces, string? program, string? path)
        => ThreadSpawn.Start("vessel-spawn", "exec " + (program ?? psi.FileName), psi, () =>
        {
            Native.Check(Native.Unshare(Native.CloneFs), "unshare");
            // A pod's container: its mount, PID, UTS and IPC namespaces, where the root path names its overlay.
            enterNamespaces?.Invoke();
            if (chrootTo is not null)
            {
                Native.Check(Native.Chroot(chrootTo), "chroot " + chrootTo);
                Native.Check(Native.Chdir("/"), "chdir /");
                if (ids.Uid != 0 || ids.Gid != 0)
                {
                    Native.SetThreadCredentials(ids.Uid, ids.Gid, ids.Groups);
                }
                psi.FileName = ResolveExecutable(program!, path!);
            }
        });

    /// <summary>Binds this process's output and exit to <paramref name="stream"/>; completes when that binding ends.</summary>
    public Task AttachAsync(MuxStream stream)
    {
        lock (_gate)
        {
            if (_exitDelivered)
            {
                return Task.CompletedTask;
            }
            _attachment.TrySetResult();
            _attachment = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _sink = stream;
            _sinkWaiter.TrySetResult(stream);
            return _attachment.Task;
        }
    }

    public void Detach(MuxStream stream)
    {
        lock (_gate)
        {
            if (_sink == stream)
            {
                _sink = null;
                _sinkWaiter = NewWaiter();
                _attachment.TrySetResult();
            }
        }
    }

    public async Task WriteStdinAsync(byte[] data)
    {
        try
        {
            Stream input = _terminal?.Input ?? _process.StandardInput.BaseStream;
            await input.WriteAsync(data);
            await input.FlushAsync();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The process closed its stdin or exited: like a broken pipe, the data is dropped.
        }
    }

    /// <summary>Closes the process's stdin; a terminal stays open (as with runc: the process keeps its terminal until it exits).</summary>
    public void CloseStdin()
    {
        if (_terminal is not null)
        {
            return;
        }
        try
        {
            _process.StandardInput.Close();
        }
        catch (IOException)
        {
        }
    }

    public void Signal(int signal)
    {
        if (_exited.IsCancellationRequested)
        {
            return;
        }
        Interlocked.Exchange(ref _signalSent, signal);
        ProcessTree.Signal(Pid, signal);
    }

    /// <summary>The terminal's new size; ignored for a process without one.</summary>
    public void Resize(TerminalSize size)
    {
        if (_terminal is null || _exited.IsCancellationRequested)
        {
            return;
        }
        try
        {
            _terminal.Resize(size);
        }
        catch (AgentErrorException)
        {
            // The terminal went away with the process: nothing left to resize.
        }
    }

    private async Task KillAfterAsync(TimeSpan timeout)
    {
        try
        {
            await Task.Delay(timeout, _exited.Token);
            _timedOut = true;
            Signal(9);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task RunAsync()
    {
        Task stdout = PumpAsync(_process.StandardOutput.BaseStream, MessageType.Stdout);
        Task stderr = PumpAsync(_process.StandardError.BaseStream, MessageType.Stderr);
        // The terminal's output is the process's stdout (a terminal has one output side).
        Task terminal = _terminal is null ? Task.CompletedTask : Task.Run(() => PumpAsync(_terminal.Output, MessageType.Stdout));
        await _process.WaitForExitAsync();
        await _exited.CancelAsync();
        // A background child may keep the pipes (or the terminal) open after the process itself
        // exited: give the pumps a moment to drain, then report the exit anyway.
        await Task.WhenAny(Task.WhenAll(stdout, stderr, terminal), Task.Delay(TimeSpan.FromSeconds(2)));
        _terminal?.Dispose();
        int code = _process.ExitCode;
        int sent = Volatile.Read(ref _signalSent);
        int signal = sent != 0 && code == 128 + sent ? sent : 0;
        byte[] exit = new ExitMessage(code, signal, _timedOut).Encode();
        await SendToSinkAsync(MessageType.Exit, exit, data: false);
        _process.Dispose();
    }

    private async Task PumpAsync(Stream pipe, MessageType type)
    {
        byte[] buffer = new byte[32 * 1024];
        try
        {
            int n;
            while ((n = await pipe.ReadAsync(buffer)) > 0)
            {
                await SendToSinkAsync(type, buffer.AsMemory(0, n), data: true);
            }
        }
        catch (ObjectDisposedException)
        {
        }
        catch (IOException)
        {
            // A terminal's master reads EIO once the last holder of the slave closed it: the end of its output.
        }
    }

    /// <summary>
    /// Sends one chunk (or the exit) to the attached host, waiting for one while none is. The
    /// send lock makes a host's detach fall between two chunks, never after a chunk was taken
    /// for a stream that is about to be let go.
    /// </summary>
    private async Task SendToSinkAsync(MessageType type, ReadOnlyMemory<byte> payload, bool data)
    {
        while (true)
        {
            MuxStream sink = await WaitForSinkAsync();
            await _send.WaitAsync();
            try
            {
                lock (_gate)
                {
                    if (_sink != sink)
                    {
                        continue; // Detached between the wait and the lock: wait for the next host.
                    }
                }
                if (data)
                {
                    await sink.SendDataAsync(type, payload, CancellationToken.None);
                    return;
                }
                await sink.SendAsync(type, payload.ToArray(), CancellationToken.None);
                lock (_gate)
                {
                    _exitDelivered = true;
                    _sink = null;
                    _attachment.TrySetResult();
                }
                return;
            }
            catch (IOException)
            {
                Detach(sink);
            }
            finally
            {
                _send.Release();
            }
        }
    }

    /// <summary>
    /// The host asked to stop reading on <paramref name="stream"/> (it is about to pause the VM):
    /// output stops going there, and <see cref="MessageType.ExecDetached"/> tells the host that
    /// every chunk sent to it is in; what the process writes next waits for the next attach.
    /// </summary>
    public async Task DetachRequestedAsync(MuxStream stream)
    {
        await _send.WaitAsync();
        try
        {
            TaskCompletionSource attachment;
            lock (_gate)
            {
                if (_sink != stream)
                {
                    return;
                }
                _sink = null;
                _sinkWaiter = NewWaiter();
                attachment = _attachment;
            }
            try
            {
                await stream.SendAsync(MessageType.ExecDetached, [], CancellationToken.None);
            }
            catch (IOException)
            {
                // The host went away too: the output waits for the next attach either way.
            }
            attachment.TrySetResult();
        }
        finally
        {
            _send.Release();
        }
    }

    private Task<MuxStream> WaitForSinkAsync()
    {
        lock (_gate)
        {
            return _sink is not null ? Task.FromResult(_sink) : _sinkWaiter.Task;
        }
    }

    private static TaskCompletionSource<MuxStream> NewWaiter() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Starts and reaps one trivial process outside any chroot, so that the code paths of
    /// Process.Start are loaded before the first chrooted spawn needs them.
    /// </summary>
    public static void WarmUp()
    {
        string[] candidates = ["/bin/busybox", "/bin/true", "/usr/bin/true"];
        string? exe = candidates.FirstOrDefault(File.Exists);
        if (exe is null)
        {
            return;
        }
        var psi = new ProcessStartInfo(exe)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        if (exe.EndsWith("busybox", StringComparison.Ordinal))
        {
            psi.ArgumentList.Add("true");
        }
        using Process? p = Process.Start(psi);
        p?.StandardInput.Close();
        p?.WaitForExit();
        _ = new Win32Exception(2).Message;
        _ = Native.Describe(2);
        _ = Path.Combine("/", "x");
        _ = File.Exists("/");
    }

    /// <summary>Finds the program like execvp does, but inside the chroot (this runs on the chrooted thread).</summary>
    public static string ResolveExecutable(string name, string path)
    {
        if (name.Contains('/', StringComparison.Ordinal))
        {
            return name;
        }
        foreach (string dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new AgentErrorException(LibC.Enoent, $"exec {name}: not found in PATH {path}");
    }
}
