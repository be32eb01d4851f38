using Microsoft.Win32.SafeHandles;
using Vessel.Agent;
using Vessel.Agent.Protocol;
using Vessel.Sandboxes;

namespace Vessel.Shim;

/// <summary>How a process of a task ended.</summary>
internal sealed record ShimExit(uint Status, DateTimeOffset At);

/// <summary>
/// One process of a task (the init process, exec id "", or an exec) run in the task's VM by
/// the guest agent, with its stdio through the FIFOs containerd passed: stdout and stderr are
/// opened read-write (the open never blocks, and the reader sees EOF when the shim closes
/// them after the exit), stdin read-only and non-blocking (<see cref="StdinFifo"/>), pumped
/// on a background thread. Stdin reaches the guest until its writer closes or CloseIO (what
/// the FIFO holds then is still delivered); the output is all written and the FIFOs closed
/// before the exit is reported.
/// </summary>
internal sealed class ShimProcess(string execId, OciProcess process, string stdin, string stdout, string stderr, bool terminal)
{
    private readonly TaskCompletionSource<ShimExit> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stdinPumped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _stdinLock = new();
    private ExecSession? _session;
    private StdinFifo? _stdin;
    private bool _stdinDrainAsked;
    private TerminalSize _terminalSize;

    public string ExecId { get; } = execId;

    public OciProcess Process { get; } = process;

    public string Stdin { get; } = stdin;

    public string Stdout { get; } = stdout;

    public string Stderr { get; } = stderr;

    public bool Terminal { get; } = terminal;

    /// <summary>The process id in the guest, 0 before it started.</summary>
    public int Pid { get; private set; }

    public bool Started => _session is not null || _exited.Task.IsCompleted;

    public Task<ShimExit> Exited => _exited.Task;

    /// <summary>Completed once the start event went out: the exit event waits for it, so containerd sees them in order.</summary>
    public TaskCompletionSource StartPublished { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Starts the process in the guest; <paramref name="onExit"/> runs once it ended and its output is flushed.</summary>
    public async Task StartAsync(Sandbox sandbox, Func<ShimProcess, ShimExit, Task> onExit, CancellationToken cancellationToken)
    {
        bool hasStdin = Stdin.Length > 0;
        FileStream? stdout = OpenOutput(Stdout);
        FileStream? stderr = Stderr.Length > 0 && Stderr == Stdout ? stdout : OpenOutput(Stderr);
        StdinFifo? stdin = null;
        try
        {
            stdin = hasStdin ? OpenStdin() : null;
            ExecRequest request = Process.ToExecRequest(hasStdin);
            _session = await sandbox.Agent.StartAsync(Terminal ? request with { Terminal = _terminalSize } : request, cancellationToken);
        }
        catch
        {
            stdout?.Dispose();
            stderr?.Dispose();
            stdin?.Dispose();
            _stdinPumped.TrySetResult();
            throw;
        }
        Pid = _session.Pid;
        if (stdin is null)
        {
            _stdinPumped.TrySetResult();
        }
        else
        {
            _ = Task.Factory.StartNew(() => PumpStdinAsync(_session, stdin), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        }
        _ = Task.Run(async () =>
        {
            uint status;
            try
            {
                ExitStatus exit = await _session.WaitAsync(stdout, stderr, sandbox.Killed);
                status = (uint)exit.ExitCode;
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or VesselException or ObjectDisposedException)
            {
                // The VM went away under the process (killed, crashed): as runc reports a SIGKILLed init.
                status = 128 + 9;
            }
            finally
            {
                StopStdin();
                stdout?.Dispose();
                if (!ReferenceEquals(stderr, stdout))
                {
                    stderr?.Dispose();
                }
                _session.Dispose();
            }
            var ended = new ShimExit(status, DateTimeOffset.UtcNow);
            try
            {
                // The exit event goes out before Wait or Delete can see the exit: containerd gets exit, then delete.
                await onExit(this, ended);
            }
            finally
            {
                _exited.TrySetResult(ended);
            }
        }, CancellationToken.None);
    }

    /// <summary>Marks a process that never started as ended (killed before Start, or its task deleted).</summary>
    public bool EndUnstarted(uint status) => _session is null && _exited.TrySetResult(new ShimExit(status, DateTimeOffset.UtcNow));

    public async Task SignalAsync(int signal, CancellationToken cancellationToken)
    {
        if (_session is null || _exited.Task.IsCompleted)
        {
            throw new Containerd.Ttrpc.TtrpcStatusException(Grpc.Core.StatusCode.NotFound, $"process {Describe()} is not running");
        }
        await _session.SignalAsync(signal, cancellationToken);
    }

    /// <summary>
    /// ResizePty: the terminal's size in the guest. Before the start (containerd may resize first)
    /// it becomes the size the terminal is made with.
    /// </summary>
    public async Task ResizeAsync(TerminalSize size, CancellationToken cancellationToken)
    {
        if (!Terminal)
        {
            return; // As containerd's runc shim: a process without a console ignores a resize.
        }
        _terminalSize = size;
        if (_session is { } session && !_exited.Task.IsCompleted)
        {
            try
            {
                await session.ResizeAsync(size, cancellationToken);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                // The process ended meanwhile: as runc, a resize of a gone terminal is not an error.
            }
        }
    }

    /// <summary>
    /// CloseIO: containerd's writer is done, but what it wrote may still sit in the FIFO (and
    /// ctr closes its end only once CloseIO returns): the pump reads the FIFO out, then closes
    /// the guest's stdin. CloseIO may come before Start has finished (ctr writes as soon as the
    /// FIFO has a reader): the drain is then remembered and the pump does it once it runs. A
    /// guest that stops taking stdin does not hold CloseIO past ten seconds.
    /// </summary>
    public async Task CloseIOAsync()
    {
        StdinFifo? stdin;
        lock (_stdinLock)
        {
            _stdinDrainAsked = true;
            stdin = _stdin;
        }
        stdin?.Drain();
        if (_session is not null)
        {
            await Task.WhenAny(_stdinPumped.Task, Task.Delay(TimeSpan.FromSeconds(10)));
        }
    }

    /// <summary>Opens the stdin FIFO (without waiting for a writer) and applies a CloseIO that came first.</summary>
    private StdinFifo OpenStdin()
    {
        StdinFifo stdin = StdinFifo.Open(Stdin);
        lock (_stdinLock)
        {
            _stdin = stdin;
            if (_stdinDrainAsked)
            {
                stdin.Drain();
            }
        }
        return stdin;
    }

    /// <summary>The process ended: the pump stops without reading more.</summary>
    private void StopStdin()
    {
        lock (_stdinLock)
        {
            _stdin?.Stop();
        }
    }

    public string Describe() => ExecId.Length == 0 ? "init" : $"exec {ExecId}";

    /// <summary>Copies the FIFO into the guest process's stdin until EOF, a drained CloseIO or the exit, then closes the guest's stdin.</summary>
    private async Task PumpStdinAsync(ExecSession session, StdinFifo stdin)
    {
        try
        {
            byte[] buffer = new byte[MuxConnection.MaxDataChunk];
            int n;
            while ((n = stdin.Read(buffer)) > 0)
            {
                await session.WriteStdinAsync(buffer.AsMemory(0, n), CancellationToken.None);
            }
            if (!_exited.Task.IsCompleted)
            {
                await session.CloseStdinAsync(CancellationToken.None);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            // The process ended (its session is gone) while we wrote: nothing left to deliver.
        }
        finally
        {
            stdin.Dispose();
            _stdinPumped.TrySetResult();
        }
    }

    private static FileStream? OpenOutput(string path)
    {
        if (path.Length == 0)
        {
            return null;
        }
        // Read-write: open(2) of a FIFO does not wait for a reader, and containerd's reader has it open already.
        SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        return new FileStream(handle, FileAccess.Write, 1);
    }
}
