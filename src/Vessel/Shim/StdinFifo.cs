using System.Runtime.InteropServices;
using Vessel.Interop;

namespace Vessel.Shim;

/// <summary>
/// The read end of a process's stdin FIFO, opened without waiting for containerd's writer.
/// <see cref="Read"/> blocks until data comes, the writer closes (EOF) or the end is asked for:
/// <see cref="Drain"/> (CloseIO: the writer is done, so what is in the FIFO now is all there
/// will be: it is read out, then EOF) or <see cref="Stop"/> (the process ended: EOF at once).
/// ctr keeps its writer open until CloseIO returns, so waiting for the writer's EOF there
/// would stall; reading what is buffered needs no writer. An eventfd wakes a blocked poll.
/// </summary>
internal sealed unsafe class StdinFifo : IDisposable
{
    private const int Reading = 0;
    private const int Draining = 1;
    private const int Stopped = 2;

    private readonly Lock _lock = new();
    private readonly int _fd;
    private readonly int _wake;
    private int _state;
    private bool _disposed;

    private StdinFifo(int fd, int wake)
    {
        _fd = fd;
        _wake = wake;
    }

    /// <summary>Opens <paramref name="path"/> read-only and non-blocking: open(2) of a FIFO then does not wait for a writer.</summary>
    public static StdinFifo Open(string path)
    {
        int fd = LibC.Open(path, LibC.ORdonly | LibC.ONonblock | LibC.OCloexec);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"cannot open the stdin FIFO {path} (errno {errno}).", errno);
        }
        int wake = LibC.Eventfd(0, LibC.EfdCloexec | LibC.EfdNonblock);
        if (wake < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            LibC.Close(fd);
            throw new IOException($"eventfd failed (errno {errno}).", errno);
        }
        return new StdinFifo(fd, wake);
    }

    /// <summary>The writer is done: what the FIFO holds is read out, then <see cref="Read"/> returns 0.</summary>
    public void Drain() => Signal(Draining);

    /// <summary>Reading ends now: <see cref="Read"/> returns 0 without reading more.</summary>
    public void Stop() => Signal(Stopped);

    /// <summary>Blocks until bytes arrive (their count), or EOF, a drained FIFO or <see cref="Stop"/> (0).</summary>
    public int Read(Span<byte> buffer)
    {
        Span<LibC.PollFd> fds = stackalloc LibC.PollFd[2];
        while (true)
        {
            int state = Volatile.Read(ref _state);
            if (state == Stopped)
            {
                return 0;
            }
            fds[0] = new LibC.PollFd { Fd = _fd, Events = LibC.PollIn };
            fds[1] = new LibC.PollFd { Fd = _wake, Events = LibC.PollIn };
            int ready;
            fixed (LibC.PollFd* p = fds)
            {
                ready = LibC.Poll(p, 2, state == Draining ? 0 : -1);
            }
            if (ready < 0)
            {
                ThrowUnlessInterrupted("poll");
                continue;
            }
            // No POLLHUP before a writer ever opened the FIFO (Linux tracks that), so an empty
            // FIFO with no writer yet only wakes us through the eventfd.
            if ((fds[0].Revents & (LibC.PollIn | LibC.PollHup | LibC.PollErr)) != 0)
            {
                nint n;
                fixed (byte* b = buffer)
                {
                    n = LibC.Read(_fd, b, (nuint)buffer.Length);
                }
                if (n >= 0)
                {
                    return (int)n;
                }
                ThrowUnlessInterrupted("read");
                continue;
            }
            if (ready == 0)
            {
                return 0; // draining and nothing left
            }
            ConsumeWake();
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            LibC.Close(_fd);
            LibC.Close(_wake);
        }
    }

    private void Signal(int state)
    {
        lock (_lock)
        {
            if (_disposed || _state >= state)
            {
                return;
            }
            _state = state;
            ulong one = 1;
            LibC.Write(_wake, (byte*)&one, sizeof(ulong));
        }
    }

    private void ConsumeWake()
    {
        ulong value;
        LibC.Read(_wake, (byte*)&value, sizeof(ulong));
    }

    private static void ThrowUnlessInterrupted(string call)
    {
        int errno = Marshal.GetLastPInvokeError();
        if (errno != LibC.Eintr && errno != LibC.Eagain)
        {
            throw new IOException($"{call} on the stdin FIFO failed (errno {errno}).", errno);
        }
    }
}
