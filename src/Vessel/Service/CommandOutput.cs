namespace Vessel.Service;

/// <summary>What a command event is: the kinds of the NDJSON lines of docs/api.md.</summary>
internal enum CommandEventKind
{
    Stdout,
    Stderr,
    Exit,
    Error,
}

/// <summary>One event of a command's output, numbered in order from 0.</summary>
internal sealed record CommandEvent(long Sequence, CommandEventKind Kind, byte[] Data, int ExitCode = 0, int Signal = 0, bool TimedOut = false, string? Message = null);

/// <summary>
/// A command's output as the daemon keeps it: the last <see cref="Capacity"/> bytes of stdout and
/// stderr (older events are dropped and counted), then the final exit or error event. Any number of
/// readers follow it from any point; the writer never waits for them.
/// </summary>
internal sealed class CommandOutput
{
    /// <summary>Bytes of output kept per process for re-attach (docs/api.md, "Limits").</summary>
    public const int Capacity = 1 << 20;

    private readonly object _gate = new();
    private readonly LinkedList<CommandEvent> _events = new();
    private long _next;
    private long _bytes;
    private long _droppedBytes;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>True once the exit (or error) event is in.</summary>
    public bool Completed { get; private set; }

    /// <summary>The sequence number the next event gets: a reader that starts "now" starts here.</summary>
    public long Next
    {
        get
        {
            lock (_gate)
            {
                return _next;
            }
        }
    }

    /// <summary>The events kept, the bytes dropped before them and the next sequence number (to save them with a pause).</summary>
    public (IReadOnlyList<CommandEvent> Events, long DroppedBytes, long Next) Export()
    {
        lock (_gate)
        {
            return ([.. _events], _droppedBytes, _next);
        }
    }

    /// <summary>An output as <see cref="Export"/> left it (sequence numbers kept, so readers' positions stay valid).</summary>
    public static CommandOutput Import(IReadOnlyList<CommandEvent> events, long droppedBytes, long next)
    {
        var output = new CommandOutput { _droppedBytes = droppedBytes, _next = next };
        foreach (CommandEvent e in events.OrderBy(e => e.Sequence))
        {
            output._events.AddLast(e);
            output._bytes += e.Data.Length;
            output._next = Math.Max(output._next, e.Sequence + 1);
            output.Completed |= e.Kind is CommandEventKind.Exit or CommandEventKind.Error;
        }
        return output;
    }

    public void AddData(CommandEventKind kind, ReadOnlySpan<byte> data) => Add(kind, data.ToArray(), 0, 0, false, null);

    public void Complete(int exitCode, int signal, bool timedOut) => Add(CommandEventKind.Exit, [], exitCode, signal, timedOut, null);

    public void Fail(string message) => Add(CommandEventKind.Error, [], 0, 0, false, message);

    /// <summary>
    /// Events from <paramref name="from"/> on, waiting for new ones until the output completes.
    /// <paramref name="dropped"/> is called once, first, with the bytes a reader missed when
    /// events it asked for were already dropped.
    /// </summary>
    public async IAsyncEnumerable<CommandEvent> ReadAsync(long from, Action<long> dropped, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        long next = from;
        bool first = true;
        while (true)
        {
            List<CommandEvent> batch;
            Task changed;
            bool done;
            long missed = 0;
            lock (_gate)
            {
                batch = [];
                foreach (CommandEvent e in _events)
                {
                    if (e.Sequence >= next)
                    {
                        batch.Add(e);
                    }
                }
                long oldest = _events.First?.Value.Sequence ?? _next;
                if (first && next < oldest && _droppedBytes > 0)
                {
                    missed = _droppedBytes;
                }
                changed = _changed.Task;
                done = Completed;
            }
            if (missed > 0)
            {
                dropped(missed);
            }
            first = false;
            foreach (CommandEvent e in batch)
            {
                next = e.Sequence + 1;
                yield return e;
                if (e.Kind is CommandEventKind.Exit or CommandEventKind.Error)
                {
                    yield break;
                }
            }
            if (done && batch.Count == 0)
            {
                yield break;
            }
            if (batch.Count == 0)
            {
                await changed.WaitAsync(cancellationToken);
            }
        }
    }

    private void Add(CommandEventKind kind, byte[] data, int exitCode, int signal, bool timedOut, string? message)
    {
        TaskCompletionSource wake;
        lock (_gate)
        {
            if (Completed)
            {
                return;
            }
            _events.AddLast(new CommandEvent(_next++, kind, data, exitCode, signal, timedOut, message));
            _bytes += data.Length;
            while (_bytes > Capacity && _events.First is { } oldest && oldest.Value.Kind is CommandEventKind.Stdout or CommandEventKind.Stderr)
            {
                _bytes -= oldest.Value.Data.Length;
                _droppedBytes += oldest.Value.Data.Length;
                _events.RemoveFirst();
            }
            Completed = kind is CommandEventKind.Exit or CommandEventKind.Error;
            wake = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        wake.TrySetResult();
    }
}
