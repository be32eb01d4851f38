using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Vessel.Nbd;

/// <summary>
/// One client connection: option negotiation (<c>NbdConnection.Handshake.cs</c>), then the
/// transmission phase (<c>NbdConnection.Transmission.cs</c>), whose requests are read in order
/// on a thread of the connection's own and handled concurrently; replies go out as each
/// completes, one at a time on the socket.
/// Any protocol violation closes this connection only.
/// </summary>
internal sealed partial class NbdConnection : IAsyncDisposable
{
    private readonly NbdServer _server;
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _cts;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly string _peer;

    // One recv takes up to this much: a whole burst of request headers (28 bytes each) at once.
    private const int InputBufferSize = 64 << 10;
    private byte[] _input = []; // used only by the connection's thread
    private int _inputStart;
    private int _inputEnd;

    // A safety net only: cancellation shuts the socket down, which ends a wait at once.
    private const int PollTimeoutMs = 1000;
    private const int ThreadStackSize = 256 << 10; // no recursion; the default 8 MiB is address space for nothing

    public NbdConnection(NbdServer server, Socket socket, ILogger logger, CancellationToken serverStopping)
    {
        _server = server;
        _socket = socket;
        _logger = logger;
        _stream = new NetworkStream(socket, ownsSocket: false);
        _cts = CancellationTokenSource.CreateLinkedTokenSource(serverStopping);
        _peer = socket.RemoteEndPoint?.ToString() is { Length: > 0 } ep ? ep : "unix client";
        _inFlight = new SemaphoreSlim(server.Options.MaxRequestsInFlight, server.Options.MaxRequestsInFlight);
    }

    public async Task RunAsync()
    {
        CancellationToken ct = _cts.Token;
        NbdLog.Connected(_logger, _peer);
        try
        {
            await RunOnThreadAsync(ct);
        }
        catch (NbdProtocolException e)
        {
            NbdLog.ProtocolViolation(_logger, _peer, e.Message);
            CancelQuietly();
        }
        catch (Exception e) when (e is IOException or SocketException or EndOfStreamException or ObjectDisposedException)
        {
            NbdLog.ClientGone(_logger, _peer, e.Message);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Server shutting down or handshake deadline.
        }
        catch (Exception e)
        {
            // The boundary: one connection's failure never takes the server down.
            NbdLog.ConnectionFailed(_logger, _peer, e);
        }
        finally
        {
            await DrainAsync();
            NbdLog.Disconnected(_logger, _peer);
        }
    }

    /// <summary>
    /// Reads the connection on a thread of its own, from the handshake on: every receive is a
    /// recv on the socket, and waiting is poll on this thread. A socket that .NET never waits
    /// on asynchronously is never added to its epoll set, so requests arriving do not wake the
    /// runtime's socket thread too. Completes when the client is done; requests handed to the
    /// thread pool keep running until <see cref="DrainAsync"/>.
    /// </summary>
    private Task RunOnThreadAsync(CancellationToken ct)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(
            () =>
            {
                try
                {
                    Run(ct);
                    done.SetResult();
                }
                catch (Exception e)
                {
                    done.SetException(e); // RunAsync sorts it like any other connection failure
                }
            },
            ThreadStackSize)
        {
            IsBackground = true,
            Name = "nbd connection",
        };
        thread.Start();
        return done.Task;
    }

    private void Run(CancellationToken ct)
    {
        // Closing or cancelling wakes this thread from poll by shutting the socket down.
        using CancellationTokenRegistration wake = ct.UnsafeRegister(static s => ((NbdConnection)s!).ShutdownQuietly(), this);
        _input = _server.Buffers.Rent(InputBufferSize);
        _replies = _server.Buffers.Rent(ReplyBufferSize);
        try
        {
            Session? session = Negotiate(ct);
            _server.NegotiationFinished(this);
            if (session is not null)
            {
                NbdLog.Transmission(_logger, _peer, session.Export.Name, session.StructuredReplies);
                ReceiveRequests(session, ct);
            }
        }
        finally
        {
            _server.Buffers.Return(_input);
            _server.Buffers.Return(_replies);
            _input = [];
            _replies = [];
        }
    }

    private void ShutdownQuietly()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    /// <summary>Closes the connection now; in-flight requests see cancellation.</summary>
    public void Abort()
    {
        CancelQuietly();
        _socket.Dispose();
    }

    private void CancelQuietly()
    {
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        _cts.Cancel();
        await _stream.DisposeAsync();
        _socket.Dispose();
        _cts.Dispose();
    }

    /// <summary>
    /// Reads exactly <paramref name="destination"/>.Length bytes, waiting on this thread, or
    /// throws <see cref="EndOfStreamException"/>: from what the last recv left in the input
    /// buffer first, then straight into <paramref name="destination"/> when it is large.
    /// </summary>
    private void ReadExact(Span<byte> destination, CancellationToken ct)
    {
        while (true)
        {
            int have = Math.Min(destination.Length, _inputEnd - _inputStart);
            _input.AsSpan(_inputStart, have).CopyTo(destination);
            _inputStart += have;
            destination = destination[have..];
            if (destination.IsEmpty)
            {
                return;
            }
            bool direct = destination.Length >= _input.Length;
            int n = direct ? Receive(destination, ct) : FillInput(ct);
            if (n == 0)
            {
                throw new EndOfStreamException("The client closed the connection mid-message.");
            }
            if (direct)
            {
                destination = destination[n..];
            }
        }
    }

    /// <summary>Moves what is left in the input buffer to its start and receives behind it: the bytes received, 0 at the client's orderly close.</summary>
    private int FillInput(CancellationToken ct)
    {
        int left = _inputEnd - _inputStart;
        _input.AsSpan(_inputStart, left).CopyTo(_input);
        _inputStart = 0;
        _inputEnd = left;
        int n = Receive(_input.AsSpan(left), ct);
        _inputEnd += n;
        return n;
    }

    /// <summary>
    /// Receives what the client has sent, waiting for at least one byte; 0 at its orderly
    /// close. Before waiting, the read replies gathered so far go out: the client may be
    /// waiting for them before it sends more.
    /// </summary>
    private int Receive(Span<byte> buffer, CancellationToken ct)
    {
        while (true)
        {
            int n = LinuxSocket.TryReceive(_socket.SafeHandle, buffer);
            if (n >= 0)
            {
                return n;
            }
            FlushReplies(ct);
            WaitForSocket(write: false, ct);
        }
    }

    private void WaitForSocket(bool write, CancellationToken ct)
    {
        while (!LinuxSocket.Wait(_socket.SafeHandle, write, PollTimeoutMs))
        {
            ct.ThrowIfCancellationRequested();
        }
        ct.ThrowIfCancellationRequested();
    }

    /// <summary>Sends all of <paramref name="data"/> from this thread, waiting while the socket buffer is full; the caller holds the send lock.</summary>
    private void SendAll(ReadOnlySpan<byte> data, CancellationToken ct)
    {
        while (data.Length > 0)
        {
            int n = LinuxSocket.TrySend(_socket.SafeHandle, data);
            if (n < 0)
            {
                WaitForSocket(write: true, ct);
                continue;
            }
            data = data[n..];
        }
    }

    /// <summary>Sends one whole message from the connection's thread (the handshake's replies), under the send lock.</summary>
    private void Send(ReadOnlySpan<byte> message, CancellationToken ct)
    {
        _sendLock.Wait(ct);
        try
        {
            SendAll(message, ct);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            CancelQuietly();
            throw;
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Sends one whole message; replies from concurrent requests never interleave.</summary>
    private async ValueTask SendAsync(ReadOnlyMemory<byte> message, CancellationToken ct)
    {
        await _sendLock.WaitAsync(ct);
        try
        {
            await _stream.WriteAsync(message, ct);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The client is gone: stop everything else on this connection too.
            CancelQuietly();
            throw;
        }
        finally
        {
            _sendLock.Release();
        }
    }
}
