using System.Buffers.Binary;
using Vessel.Nbd;

namespace Vessel.Tests.Nbd;

/// <summary>A deliberately bare NBD client for hostile-client tests: it sends exactly the bytes a test asks for.</summary>
internal sealed class RawNbdClient : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    private RawNbdClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public static async Task<RawNbdClient> ConnectAsync(string socketPath)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        return new RawNbdClient(s);
    }

    /// <summary>Reads the greeting, sends client flags, optionally structured replies, then GO; returns the reply type of GO.</summary>
    public async Task<(NbdOptionReply Reply, ulong Size, ushort Flags)> GoAsync(string name, bool structured = false)
    {
        byte[] greeting = await ReadAsync(18);
        if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != NbdProtocol.NbdMagic)
        {
            throw new InvalidDataException("bad greeting");
        }
        await WriteAsync(BigEndian32(3)); // fixed newstyle + no zeroes
        if (structured)
        {
            await SendOptionAsync(NbdOption.StructuredReply, []);
            (NbdOptionReply r, _) = await ReadOptionReplyAsync();
            if (r != NbdOptionReply.Ack)
            {
                throw new InvalidDataException("structured replies refused");
            }
        }
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        byte[] data = new byte[4 + nameBytes.Length + 2];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)nameBytes.Length);
        nameBytes.CopyTo(data, 4);
        await SendOptionAsync(NbdOption.Go, data);
        ulong size = 0;
        ushort flags = 0;
        while (true)
        {
            (NbdOptionReply reply, byte[] payload) = await ReadOptionReplyAsync();
            if (reply == NbdOptionReply.Info && BinaryPrimitives.ReadUInt16BigEndian(payload) == 0)
            {
                size = BinaryPrimitives.ReadUInt64BigEndian(payload.AsSpan(2));
                flags = BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(10));
                continue;
            }
            if (reply == NbdOptionReply.Info)
            {
                continue;
            }
            return (reply, size, flags);
        }
    }

    public async Task SendOptionAsync(NbdOption option, byte[] data)
    {
        byte[] m = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(m, NbdProtocol.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(8), (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(12), (uint)data.Length);
        data.CopyTo(m, 16);
        await WriteAsync(m);
    }

    public async Task<(NbdOptionReply Reply, byte[] Payload)> ReadOptionReplyAsync()
    {
        byte[] h = await ReadAsync(20);
        var reply = (NbdOptionReply)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
        byte[] payload = await ReadAsync((int)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16)));
        return (reply, payload);
    }

    public Task SendRequestAsync(NbdCommand command, ulong cookie, ulong offset, uint length, byte[]? payload = null, uint magic = NbdRequest.Magic)
    {
        byte[] m = new byte[NbdRequest.Size + (payload?.Length ?? 0)];
        new NbdRequest(NbdCommandFlags.None, command, cookie, offset, length).Write(m);
        BinaryPrimitives.WriteUInt32BigEndian(m, magic);
        payload?.CopyTo(m, NbdRequest.Size);
        return WriteAsync(m);
    }

    /// <summary>Reads a simple reply; for a successful read, <paramref name="dataLength"/> bytes follow it.</summary>
    public async Task<(NbdError Error, ulong Cookie, byte[] Data)> ReadSimpleReplyAsync(int dataLength = 0)
    {
        byte[] h = await ReadAsync(16);
        if (BinaryPrimitives.ReadUInt32BigEndian(h) != NbdProtocol.SimpleReplyMagic)
        {
            throw new InvalidDataException("not a simple reply");
        }
        var error = (NbdError)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(4));
        ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8));
        byte[] data = error == NbdError.None ? await ReadAsync(dataLength) : [];
        return (error, cookie, data);
    }

    public Task WriteAsync(byte[] bytes) => _stream.WriteAsync(bytes).AsTask();

    public async Task<byte[]> ReadAsync(int count)
    {
        byte[] b = new byte[count];
        await _stream.ReadExactlyAsync(b);
        return b;
    }

    /// <summary>True when the server closed the connection (reads hit end of stream).</summary>
    public async Task<bool> IsClosedByServerAsync(TimeSpan within)
    {
        using var cts = new CancellationTokenSource(within);
        byte[] b = new byte[4096];
        try
        {
            while (true)
            {
                if (await _stream.ReadAsync(b, cts.Token) == 0)
                {
                    return true;
                }
            }
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose() => _stream.Dispose();

    private static byte[] BigEndian32(uint v)
    {
        byte[] b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        return b;
    }
}
