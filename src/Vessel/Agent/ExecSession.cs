using Vessel.Agent.Protocol;

namespace Vessel.Agent;

/// <summary>What to run in the sandbox.</summary>
public sealed record ExecRequest(IReadOnlyList<string> Arguments)
{
    /// <summary>KEY=VALUE entries added to the defaults (PATH, HOME).</summary>
    public IReadOnlyList<string> Environment { get; init; } = [];

    public string? WorkingDirectory { get; init; }

    /// <summary>"name", "uid", "name:group" or "uid:gid", looked up in the rootfs; null means root.</summary>
    public string? User { get; init; }

    /// <summary>Whether the host will send stdin; when false the process sees EOF at once.</summary>
    public bool Stdin { get; init; }

    /// <summary>When set, the agent kills the process tree after this long.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>A pod's container to run in (its namespaces and overlay root); null: the sandbox's rootfs.</summary>
    public string? Container { get; init; }

    /// <summary>
    /// When set, the process runs on a pseudo-terminal of this size in the guest: its output (stdout
    /// and stderr together, as a terminal shows them) arrives as stdout, stdin is what is typed, and
    /// <see cref="ExecSession.ResizeAsync"/> changes the size. Not in a pod's container.
    /// </summary>
    public TerminalSize? Terminal { get; init; }
}

/// <summary>How a process ended. <see cref="ExitCode"/> is 128+signal when a signal killed it.</summary>
public sealed record ExitStatus(int ExitCode, int Signal, bool TimedOut);

/// <summary>A running process in the sandbox: its stdin, its streamed output and its exit.</summary>
public sealed class ExecSession : IDisposable
{
    private readonly MuxStream _stream;

    internal ExecSession(MuxStream stream, int pid, bool canDetach)
    {
        _stream = stream;
        Pid = pid;
        CanDetach = canDetach;
    }

    /// <summary>Whether the agent answers <see cref="DetachAsync"/>.</summary>
    public bool CanDetach { get; }

    /// <summary>The process id in the guest; use it to re-attach after a reconnect.</summary>
    public int Pid { get; }

    public Task WriteStdinAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        => _stream.SendDataAsync(MessageType.Stdin, data, cancellationToken);

    public Task CloseStdinAsync(CancellationToken cancellationToken)
        => _stream.SendAsync(MessageType.StdinClose, [], cancellationToken);

    /// <summary>Sends a signal to the process and its descendants (9 = SIGKILL, 15 = SIGTERM).</summary>
    public Task SignalAsync(int signal, CancellationToken cancellationToken)
        => _stream.SendAsync(MessageType.Signal, new SignalMessage(signal).Encode(), cancellationToken);

    /// <summary>Sets the size of the process's terminal (the process gets SIGWINCH); ignored by a process without one.</summary>
    public Task ResizeAsync(TerminalSize size, CancellationToken cancellationToken)
        => _stream.SendAsync(MessageType.Resize, size.Encode(), cancellationToken);

    /// <summary>
    /// Asks the agent to stop sending this process's output here (before a pause). The reader
    /// in <see cref="WaitOrDetachedAsync"/> then gets every chunk already sent and returns null;
    /// the process keeps running and its next output waits for an attach.
    /// </summary>
    public Task DetachAsync(CancellationToken cancellationToken)
        => _stream.SendAsync(MessageType.ExecDetach, [], cancellationToken);

    /// <summary>Copies the process's output into the given streams as it arrives; returns its exit status.</summary>
    public async Task<ExitStatus> WaitAsync(Stream? stdout, Stream? stderr, CancellationToken cancellationToken)
        => await WaitOrDetachedAsync(stdout, stderr, cancellationToken)
            ?? throw new VesselException(VesselErrorReason.Protocol, $"The agent detached process {Pid} though nobody asked it to.");

    /// <summary>Like <see cref="WaitAsync"/>, but returns null when the agent confirms a <see cref="DetachAsync"/>.</summary>
    public async Task<ExitStatus?> WaitOrDetachedAsync(Stream? stdout, Stream? stderr, CancellationToken cancellationToken)
    {
        while (true)
        {
            Frame f = await AgentClient.NextAsync(_stream, $"process {Pid}", cancellationToken);
            switch (f.Type)
            {
                case MessageType.Stdout:
                    if (stdout is not null)
                    {
                        await stdout.WriteAsync(f.Payload, cancellationToken);
                        await stdout.FlushAsync(cancellationToken);
                    }
                    break;
                case MessageType.Stderr:
                    if (stderr is not null)
                    {
                        await stderr.WriteAsync(f.Payload, cancellationToken);
                        await stderr.FlushAsync(cancellationToken);
                    }
                    break;
                case MessageType.Exit:
                    ExitMessage m = ExitMessage.Decode(f.Payload);
                    return new ExitStatus(m.ExitCode, m.Signal, m.TimedOut);
                case MessageType.ExecDetached:
                    return null;
                default:
                    throw AgentClient.Unexpected(f, $"process {Pid}");
            }
        }
    }

    public void Dispose() => _stream.Dispose();
}
