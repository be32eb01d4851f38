using System.Net.Sockets;

namespace Vessel.Agent;

/// <summary>Where host connections come from: the virtio-serial port in a VM, a unix socket in tests.</summary>
internal interface IAgentTransport
{
    /// <summary>Waits for the host to connect and returns the byte stream of that connection.</summary>
    Task<Stream> AcceptAsync(CancellationToken cancellationToken);
}

/// <summary>
/// The virtio-serial port named <see cref="Protocol.AgentProtocol.PortName"/>. The device stays
/// open for the agent's whole life: while no host is connected, reads see EOF and poll reports
/// POLLHUP, so "accept" is waiting for POLLHUP to clear.
/// </summary>
internal sealed class VirtioPortTransport : IAgentTransport
{
    private readonly int _fd;
    private readonly object _writeGate = new();
    private int _generation;

    private VirtioPortTransport(int fd, string device)
    {
        _fd = fd;
        Device = device;
    }

    public string Device { get; }

    public static VirtioPortTransport Open(string portName, TimeSpan wait)
    {
        var deadline = DateTime.UtcNow + wait;
        while (true)
        {
            string? device = FindPort(portName);
            if (device is not null && File.Exists(device))
            {
                int fd = LibC.Open(device, LibC.ORdwr | LibC.OCloexec, 0);
                if (fd >= 0)
                {
                    return new VirtioPortTransport(fd, device);
                }
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new IOException($"virtio-serial port '{portName}' did not appear in /sys/class/virtio-ports within {wait.TotalSeconds} s");
            }
            Thread.Sleep(10);
        }
    }

    public static string? FindPort(string portName)
    {
        const string Ports = "/sys/class/virtio-ports";
        if (!Directory.Exists(Ports))
        {
            return null;
        }
        foreach (string dir in Directory.EnumerateDirectories(Ports))
        {
            string nameFile = Path.Combine(dir, "name");
            if (File.Exists(nameFile) && File.ReadAllText(nameFile).Trim() == portName)
            {
                return "/dev/" + Path.GetFileName(dir);
            }
        }
        return null;
    }

    public async Task<Stream> AcceptAsync(CancellationToken cancellationToken)
    {
        while (!HostConnected())
        {
            await Task.Delay(10, cancellationToken);
        }
        int generation = Interlocked.Increment(ref _generation);
        return new PortStream(this, generation);
    }

    private unsafe bool HostConnected()
    {
        var pfd = new LibC.PollFd { Fd = _fd, Events = LibC.PollIn };
        int n = LibC.Poll(&pfd, 1, 0);
        return n >= 0 && (pfd.Revents & LibC.PollHup) == 0;
    }

    /// <summary>One session's view of the port: writes of an older session fail instead of interleaving.</summary>
    private sealed class PortStream : Stream
    {
        private readonly VirtioPortTransport _port;
        private readonly int _generation;

        public PortStream(VirtioPortTransport port, int generation)
        {
            _port = port;
            _generation = generation;
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override unsafe int Read(byte[] buffer, int offset, int count)
        {
            if (_generation != Volatile.Read(ref _port._generation))
            {
                return 0;
            }
            fixed (byte* b = &buffer[offset])
            {
                while (true)
                {
                    nint n = LibC.Read(_port._fd, b, (nuint)count);
                    if (n >= 0)
                    {
                        return (int)n;
                    }
                    if (Native.LastError != LibC.Eintr)
                    {
                        throw new IOException("read from the control port: " + Native.Describe(Native.LastError));
                    }
                }
            }
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => Task.Run(() => Read(buffer, offset, count), cancellationToken);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (System.Runtime.InteropServices.MemoryMarshal.TryGetArray(buffer, out ArraySegment<byte> segment))
            {
                return new ValueTask<int>(ReadAsync(segment.Array!, segment.Offset, segment.Count, cancellationToken));
            }
            return base.ReadAsync(buffer, cancellationToken);
        }

        public override unsafe void Write(byte[] buffer, int offset, int count)
        {
            // One lock across sessions: a write of an old session that blocked while the host was
            // away finishes before the new session's sync marker goes out, never in its middle.
            lock (_port._writeGate)
            {
                if (_generation != Volatile.Read(ref _port._generation))
                {
                    throw new IOException("the control port was taken over by a newer session");
                }
                fixed (byte* b = buffer)
                {
                    int done = 0;
                    while (done < count)
                    {
                        nint n = LibC.Write(_port._fd, b + offset + done, (nuint)(count - done));
                        if (n < 0)
                        {
                            if (Native.LastError == LibC.Eintr)
                            {
                                continue;
                            }
                            throw new IOException("write to the control port: " + Native.Describe(Native.LastError));
                        }
                        done += (int)n;
                    }
                }
            }
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            byte[] copy = buffer.ToArray();
            Write(copy, 0, copy.Length);
            return ValueTask.CompletedTask;
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            Write(buffer, offset, count);
            return Task.CompletedTask;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

/// <summary>A unix socket listener: lets tests run the real agent on the host, one host connection at a time.</summary>
internal sealed class UnixSocketTransport : IAgentTransport, IDisposable
{
    private readonly Socket _listener;

    public UnixSocketTransport(string path)
    {
        File.Delete(path);
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(4);
    }

    public async Task<Stream> AcceptAsync(CancellationToken cancellationToken)
    {
        Socket s = await _listener.AcceptAsync(cancellationToken);
        return new NetworkStream(s, ownsSocket: true);
    }

    public void Dispose() => _listener.Dispose();
}
