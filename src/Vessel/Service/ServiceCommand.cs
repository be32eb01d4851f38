using Vessel.Agent;
using Vessel.Common;

namespace Vessel.Service;

/// <summary>
/// A process started through the API. The daemon reads its output into a bounded
/// <see cref="CommandOutput"/> that any number of clients follow; across a pause the reading
/// stops (<see cref="DetachAsync"/>: the agent keeps the process, its pipe waits) and a resume
/// re-attaches to the same pid (<see cref="AttachAsync"/>).
/// </summary>
internal sealed partial class ServiceCommand
{
    /// <summary>How long a pause waits for the agent to confirm a detach.</summary>
    private static readonly TimeSpan DetachWait = TimeSpan.FromSeconds(10);

    private readonly SemaphoreSlim _stdin = new(1, 1);
    private ExecSession? _session;
    private CancellationTokenSource? _pump;
    private Task _pumpTask = Task.CompletedTask;

    public ServiceCommand(int pid, string cmd, IReadOnlyList<string> args, bool background, DateTimeOffset startedAt, bool stdinOpen)
    {
        Pid = pid;
        Cmd = cmd;
        Args = args;
        Background = background;
        StartedAt = startedAt;
        StdinClosed = !stdinOpen;
    }

    public int Pid { get; }

    public string Cmd { get; }

    public IReadOnlyList<string> Args { get; }

    public bool Background { get; }

    public DateTimeOffset StartedAt { get; }

    public CommandOutput Output { get; private init; } = new();

    public bool StdinClosed { get; private set; }

    /// <summary>When the exit (or a broken connection) was recorded; null while it runs.</summary>
    public DateTimeOffset? EndedAt { get; private set; }

    /// <summary>Starts reading <paramref name="session"/> (a new exec, or an attach after a resume).</summary>
    public void Attach(ExecSession session, TimeProvider time)
    {
        _session = session;
        _pump = new CancellationTokenSource();
        CancellationToken token = _pump.Token;
        _pumpTask = Task.Run(() => PumpAsync(session, time, token), CancellationToken.None);
    }

    /// <summary>Re-attaches through a new agent connection (after a resume).</summary>
    public async Task AttachAsync(AgentClient agent, TimeProvider time, CancellationToken cancellationToken)
    {
        if (Output.Completed)
        {
            return;
        }
        try
        {
            Attach(await agent.AttachAsync(Pid, cancellationToken), time);
        }
        catch (AgentException e)
        {
            Output.Fail($"process {Pid} could not be re-attached after the resume: {e.Message}");
            EndedAt = time.GetUtcNow();
        }
    }

    /// <summary>
    /// Stops reading (the process keeps running in the guest); used before a pause. The agent is
    /// asked to detach and confirms after its last chunk for this reader, so no output is in
    /// flight when the VM stops: what the process writes next waits in the guest for the resume.
    /// An agent that cannot detach (in a snapshot older than that) or does not answer within
    /// <see cref="DetachWait"/> is dropped instead, as before: output in flight then is lost.
    /// </summary>
    public async Task DetachAsync()
    {
        if (_pump is not { } pump)
        {
            return;
        }
        if (_session is { CanDetach: true } session && !_pumpTask.IsCompleted)
        {
            try
            {
                await session.DetachAsync(CancellationToken.None);
                await _pumpTask.WaitAsync(DetachWait);
            }
            catch (Exception e) when (e is IOException or TimeoutException or VesselException)
            {
                // The connection broke (the pump records it) or the agent did not answer: drop the reader.
            }
        }
        await pump.CancelAsync();
        await _pumpTask;
        pump.Dispose();
        _pump = null;
    }

    public async Task WriteStdinAsync(ReadOnlyMemory<byte> data, bool close, CancellationToken cancellationToken)
    {
        await _stdin.WaitAsync(cancellationToken);
        try
        {
            if (StdinClosed)
            {
                throw new VesselException(VesselErrorReason.Conflict, $"The stdin of process {Pid} is already closed.");
            }
            ExecSession session = Session();
            if (!data.IsEmpty)
            {
                await session.WriteStdinAsync(data, cancellationToken);
            }
            if (close)
            {
                await session.CloseStdinAsync(cancellationToken);
                StdinClosed = true;
            }
        }
        finally
        {
            _stdin.Release();
        }
    }

    public Task SignalAsync(int signal, CancellationToken cancellationToken) => Session().SignalAsync(signal, cancellationToken);

    private ExecSession Session() => !Output.Completed && _session is { } s
        ? s
        : throw new VesselException(VesselErrorReason.NotFound, $"Process {Pid} is not running.");

    private async Task PumpAsync(ExecSession session, TimeProvider time, CancellationToken cancellationToken)
    {
        try
        {
            ExitStatus? status = await session.WaitOrDetachedAsync(new Sink(Output, CommandEventKind.Stdout), new Sink(Output, CommandEventKind.Stderr), cancellationToken);
            if (status is null)
            {
                return; // Detached for a pause (DetachAsync): every chunk sent to us is in.
            }
            Output.Complete(status.ExitCode, status.Signal, status.TimedOut);
            EndedAt = time.GetUtcNow();
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Detached for a pause: the process keeps running in the guest.
        }
        catch (Exception e) when (e is VesselException or IOException or ObjectDisposedException)
        {
            Output.Fail($"the connection to process {Pid} broke: {e.Message}");
            EndedAt = time.GetUtcNow();
        }
        finally
        {
            session.Dispose();
        }
    }

    /// <summary>A write-only stream that appends what the process wrote to its output log.</summary>
    private sealed class Sink(CommandOutput output, CommandEventKind kind) : WriteOnlyStream
    {
        public override void Write(ReadOnlySpan<byte> buffer) => output.AddData(kind, buffer);
    }
}
