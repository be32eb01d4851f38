using System.Runtime.InteropServices;
using Vessel.Interop;

namespace Vessel.Nbd;

/// <summary>
/// Socket calls for a connection's own thread, made directly on the descriptor: recv and
/// send that never block (MSG_DONTWAIT, whatever mode .NET left the socket in) and poll to
/// wait. A dedicated thread waiting in poll costs one wakeup per batch of requests, where the
/// async path costs an epoll thread, a thread-pool hop and the pool's spinning per receive,
/// which on a small machine takes the CPU from the client whose requests are being served.
/// </summary>
internal static class LinuxSocket
{
    /// <summary>Receives what is there now: the bytes read, 0 at the peer's orderly close, or -1 when nothing is available yet.</summary>
    public static unsafe int TryReceive(SafeHandle socket, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            return Transfer(socket, p, buffer.Length, send: false);
        }
    }

    /// <summary>Sends what the socket buffer takes now: the bytes sent, or -1 when it takes none.</summary>
    public static unsafe int TrySend(SafeHandle socket, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            return Transfer(socket, p, data.Length, send: true);
        }
    }

    /// <summary>One non-blocking recv or send, retried on EINTR; -1 on EAGAIN.</summary>
    private static unsafe int Transfer(SafeHandle socket, byte* p, int length, bool send)
    {
        using var held = new HeldDescriptor(socket);
        int fd = held.Fd;
        while (true)
        {
            long n = send ? LibC.Send(fd, p, (nuint)length, LibC.MsgDontwait | LibC.MsgNosignal) : LibC.Recv(fd, p, (nuint)length, LibC.MsgDontwait);
            if (n >= 0)
            {
                return (int)n;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == LibC.Eagain)
            {
                return -1;
            }
            if (errno != LibC.Eintr)
            {
                throw new IOException($"{(send ? "send" : "recv")} failed (errno {errno}).", errno);
            }
        }
    }

    /// <summary>
    /// Waits until the socket can be read (or written), it is shut down or in error (the next
    /// call then reports that), or <paramref name="timeoutMs"/> passes: false only then.
    /// </summary>
    public static unsafe bool Wait(SafeHandle socket, bool write, int timeoutMs)
    {
        using var held = new HeldDescriptor(socket);
        var pfd = new LibC.PollFd { Fd = held.Fd, Events = write ? LibC.PollOut : LibC.PollIn };
        while (true)
        {
            int n = LibC.Poll(&pfd, 1, timeoutMs);
            if (n >= 0)
            {
                return n > 0;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno != LibC.Eintr)
            {
                throw new IOException($"poll failed (errno {errno}).", errno);
            }
        }
    }
}
