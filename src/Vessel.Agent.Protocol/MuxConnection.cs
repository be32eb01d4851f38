using System.Buffers;
using System.Collections.Concurrent;

namespace Vessel.Agent.Protocol;

/// <summary>
/// Frames over one byte stream, multiplexed into streams by id (docs/formats/agent-protocol.md).
/// Used by both ends: the host opens streams (odd ids); the agent accepts them. Data messages
/// are flow-controlled per stream with a credit window, so a slow reader of one stream never
/// makes the other side buffer without bound and never blocks the other streams.
/// </summary>
public sealed class MuxConnection : IAsyncDisposable
{
    /// <summary>Bytes of data messages a side may send on a stream before the peer grants more.</summary>
    public const int InitialWindow = 1 << 20;

    /// <summary>Largest data frame we send: small enough to interleave streams fairly.</summary>
    public const int MaxDataChunk = 64 * 1024;

    private readonly Stream _stream;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<uint, MuxStream> _streams = new();
    private readonly Func<MuxStream, Frame, Task>? _acceptStream;
    private readonly Func<Frame, Task>? _controlFrame;
    private readonly CancellationTokenSource _closed = new();
    private Task _readLoop = Task.CompletedTask;
    private readonly byte[] _readBuffer = new byte[64 * 1024];
    private int _readStart;
    private int _readEnd;
    private uint _nextStreamId = 1;
    private volatile bool _isClosed;

    /// <param name="stream">The byte stream; disposing the connection disposes it.</param>
    /// <param name="acceptStream">Agent side: called with each new stream and its request frame.</param>
    /// <param name="controlFrame">Called for frames on stream 0.</param>
    public MuxConnection(Stream stream, Func<MuxStream, Frame, Task>? acceptStream = null, Func<Frame, Task>? controlFrame = null)
    {
        _stream = stream;
        _acceptStream = acceptStream;
        _controlFrame = controlFrame;
    }

    /// <summary>Cancelled when the connection ends, for any reason.</summary>
    public CancellationToken Closed => _closed.Token;

    public bool IsClosed => _isClosed;

    /// <summary>Why the connection ended, when it ended with an error.</summary>
    public Exception? Fault { get; private set; }

    /// <summary>Completes when the read loop ends (EOF, error or disposal).</summary>
    public Task Completion => _readLoop;

    public void Start() => _readLoop = Task.Run(ReadLoopAsync);

    /// <summary>Opens a new stream (host side).</summary>
    public MuxStream OpenStream()
    {
        uint id = Interlocked.Add(ref _nextStreamId, 2) - 2;
        var s = new MuxStream(this, id);
        _streams[id] = s;
        if (_isClosed)
        {
            s.Abort();
        }
        return s;
    }

    /// <summary>Writes one frame. Frames are never torn: cancellation only applies while waiting for the writer.</summary>
    public async Task WriteFrameAsync(MessageType type, uint streamId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (payload.Length > FrameHeader.MaxPayload)
        {
            throw new ArgumentOutOfRangeException(nameof(payload), "Frame payload too large.");
        }
        int size = FrameHeader.Size + payload.Length;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            new FrameHeader((uint)payload.Length, type, streamId).Write(buffer);
            payload.Span.CopyTo(buffer.AsSpan(FrameHeader.Size));
            await _writeLock.WaitAsync(cancellationToken);
            try
            {
                if (_isClosed)
                {
                    throw new IOException("The agent connection is closed.", Fault);
                }
                await _stream.WriteAsync(buffer.AsMemory(0, size), CancellationToken.None);
            }
            finally
            {
                _writeLock.Release();
            }
        }
        catch (Exception e) when (e is ObjectDisposedException or NotSupportedException or System.Net.Sockets.SocketException || (e is IOException && !_isClosed))
        {
            Close(e);
            throw new IOException("The agent connection broke: " + e.Message, e);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    internal void Remove(MuxStream stream) => _streams.TryRemove(KeyValuePair.Create(stream.Id, stream));

    /// <summary>Ends every open stream (a new session replaces the old one on the same channel).</summary>
    public void ResetStreams()
    {
        foreach (MuxStream s in _streams.Values)
        {
            s.Abort();
            Remove(s);
        }
    }

    /// <summary>Writes bytes outside any frame (the agent's sync marker).</summary>
    public async Task WriteRawAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_isClosed)
            {
                throw new IOException("The agent connection is closed.", Fault);
            }
            await _stream.WriteAsync(bytes, CancellationToken.None);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async Task ReadLoopAsync()
    {
        byte[] header = new byte[FrameHeader.Size];
        try
        {
            while (true)
            {
                if (!await ReadExactAsync(header, allowEof: true))
                {
                    break;
                }
                FrameHeader h = FrameHeader.Read(header);
                byte[] payload = h.Length == 0 ? [] : new byte[h.Length];
                await ReadExactAsync(payload, allowEof: false);
                await DispatchAsync(new Frame(h.Type, h.StreamId, payload));
            }
            Close(null);
        }
        catch (Exception e)
        {
            Close(e);
        }
    }

    private async Task DispatchAsync(Frame frame)
    {
        if (frame.StreamId == 0)
        {
            if (_controlFrame is not null)
            {
                await _controlFrame(frame);
            }
            return;
        }
        if (frame.Type == MessageType.WindowUpdate)
        {
            if (_streams.TryGetValue(frame.StreamId, out MuxStream? target))
            {
                target.AddCredit(WindowUpdateMessage.Decode(frame.Payload).Bytes);
            }
            return;
        }
        if (_streams.TryGetValue(frame.StreamId, out MuxStream? existing))
        {
            existing.Deliver(frame);
            return;
        }
        if (_acceptStream is not null && MessageTypes.IsRequest(frame.Type))
        {
            var s = new MuxStream(this, frame.StreamId);
            _streams[frame.StreamId] = s;
            _ = Task.Run(async () =>
            {
                try
                {
                    await _acceptStream(s, frame);
                }
                finally
                {
                    s.Dispose();
                }
            });
        }
        // Anything else belongs to a stream that already ended (a late stdin chunk, a window
        // update after the reader left): dropping it is correct.
    }

    private async Task<bool> ReadExactAsync(byte[] buffer, bool allowEof)
    {
        // Reads go through one buffer: a frame header and a small payload then cost one read
        // call, which matters on a virtio-serial port where each call is a syscall and a vmexit.
        int read = 0;
        while (read < buffer.Length)
        {
            if (_readStart == _readEnd)
            {
                int n = await _stream.ReadAsync(_readBuffer, _closed.Token);
                if (n == 0)
                {
                    if (read == 0 && allowEof)
                    {
                        return false;
                    }
                    throw new EndOfStreamException("The agent connection ended in the middle of a frame.");
                }
                _readStart = 0;
                _readEnd = n;
            }
            int take = Math.Min(buffer.Length - read, _readEnd - _readStart);
            Buffer.BlockCopy(_readBuffer, _readStart, buffer, read, take);
            _readStart += take;
            read += take;
        }
        return true;
    }

    private void Close(Exception? fault)
    {
        if (_isClosed)
        {
            return;
        }
        Fault = fault;
        _isClosed = true;
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
        foreach (MuxStream s in _streams.Values)
        {
            s.Abort();
        }
    }

    public async ValueTask DisposeAsync()
    {
        Close(null);
        await _stream.DisposeAsync();
        try
        {
            await _readLoop;
        }
        catch (OperationCanceledException)
        {
        }
        _closed.Dispose();
    }
}

/// <summary>One multiplexed stream: an inbound frame queue and a send window.</summary>
public sealed class MuxStream : IDisposable
{
    private readonly MuxConnection _connection;
    private readonly System.Threading.Channels.Channel<Frame> _inbound =
        System.Threading.Channels.Channel.CreateUnbounded<Frame>(new System.Threading.Channels.UnboundedChannelOptions { SingleReader = true });
    private readonly object _gate = new();
    private long _credit = MuxConnection.InitialWindow;
    private TaskCompletionSource? _creditWaiter;
    private long _unread;
    private long _consumedSinceUpdate;
    private bool _aborted;

    internal MuxStream(MuxConnection connection, uint id)
    {
        _connection = connection;
        Id = id;
    }

    public uint Id { get; }

    public MuxConnection Connection => _connection;

    /// <summary>The next frame, or null once the stream or its connection has ended.</summary>
    public async ValueTask<Frame?> ReadAsync(CancellationToken cancellationToken)
    {
        while (await _inbound.Reader.WaitToReadAsync(cancellationToken))
        {
            if (_inbound.Reader.TryRead(out Frame? frame))
            {
                if (MessageTypes.IsData(frame.Type))
                {
                    await ConsumedAsync(frame.Payload.Length);
                }
                return frame;
            }
        }
        return null;
    }

    public Task SendAsync(MessageType type, byte[] payload, CancellationToken cancellationToken)
        => _connection.WriteFrameAsync(type, Id, payload, cancellationToken);

    /// <summary>Sends data in chunks, waiting for window credit from the peer as needed.</summary>
    public async Task SendDataAsync(MessageType type, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (data.Length > 0)
        {
            int n = await TakeCreditAsync(Math.Min(data.Length, MuxConnection.MaxDataChunk), cancellationToken);
            await _connection.WriteFrameAsync(type, Id, data[..n], cancellationToken);
            data = data[n..];
        }
    }

    internal void Deliver(Frame frame)
    {
        if (MessageTypes.IsData(frame.Type))
        {
            lock (_gate)
            {
                _unread += frame.Payload.Length;
                if (_unread > MuxConnection.InitialWindow)
                {
                    throw new AgentProtocolException($"Stream {Id}: peer sent more data than its window allows.");
                }
            }
        }
        _inbound.Writer.TryWrite(frame);
    }

    internal void AddCredit(uint bytes)
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            _credit += bytes;
            waiter = _creditWaiter;
            _creditWaiter = null;
        }
        waiter?.TrySetResult();
    }

    internal void Abort()
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            _aborted = true;
            waiter = _creditWaiter;
            _creditWaiter = null;
        }
        _inbound.Writer.TryComplete();
        waiter?.TrySetException(new IOException("The agent connection is closed."));
    }

    private async Task<int> TakeCreditAsync(int wanted, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (_aborted || _connection.IsClosed)
                {
                    throw new IOException("The agent connection is closed.");
                }
                if (_credit > 0)
                {
                    int take = (int)Math.Min(_credit, wanted);
                    _credit -= take;
                    return take;
                }
                _creditWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _creditWaiter.Task;
            }
            await wait.WaitAsync(cancellationToken);
        }
    }

    private async Task ConsumedAsync(int bytes)
    {
        long grant = 0;
        lock (_gate)
        {
            _unread -= bytes;
            _consumedSinceUpdate += bytes;
            if (_consumedSinceUpdate >= MuxConnection.InitialWindow / 4)
            {
                grant = _consumedSinceUpdate;
                _consumedSinceUpdate = 0;
            }
        }
        if (grant > 0)
        {
            try
            {
                await _connection.WriteFrameAsync(MessageType.WindowUpdate, Id, new WindowUpdateMessage((uint)grant).Encode(), CancellationToken.None);
            }
            catch (IOException)
            {
                // The connection is gone; the reader will see the end of the stream next.
            }
        }
    }

    public void Dispose()
    {
        _connection.Remove(this);
        Abort();
    }
}
