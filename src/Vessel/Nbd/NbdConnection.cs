using System.Buffers;
using System.IO.Pipelines;
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
    private readonly PipeReader _reader;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _cts;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly string _peer;

    public NbdConnection(NbdServer server, Socket socket, ILogger logger, CancellationToken serverStopping)
    {
        _server = server;
        _socket = socket;
        _logger = logger;
        _stream = new NetworkStream(socket, ownsSocket: false);
        _reader = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: 256 << 10, minimumReadSize: 64 << 10, leaveOpen: true));
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
            Session? session = await NegotiateAsync(ct);
            if (session is not null)
            {
                await TransmitAsync(session, ct);
            }
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
        await _reader.CompleteAsync();
        await _stream.DisposeAsync();
        _socket.Dispose();
        _cts.Dispose();
    }

    /// <summary>Reads exactly <paramref name="destination"/>.Length bytes or throws <see cref="EndOfStreamException"/>.</summary>
    private async ValueTask ReadExactAsync(Memory<byte> destination, CancellationToken ct)
    {
        if (destination.IsEmpty)
        {
            return;
        }
        ReadResult result = await _reader.ReadAtLeastAsync(destination.Length, ct);
        ReadOnlySequence<byte> buffer = result.Buffer;
        if (buffer.Length < destination.Length)
        {
            _reader.AdvanceTo(buffer.Start, buffer.End);
            throw new EndOfStreamException("The client closed the connection.");
        }
        buffer.Slice(0, destination.Length).CopyTo(destination.Span);
        _reader.AdvanceTo(buffer.GetPosition(destination.Length));
    }

    private async ValueTask SkipAsync(long count, CancellationToken ct)
    {
        while (count > 0)
        {
            ReadResult result = await _reader.ReadAsync(ct);
            long n = Math.Min(count, result.Buffer.Length);
            if (n == 0 && result.IsCompleted)
            {
                throw new EndOfStreamException("The client closed the connection.");
            }
            _reader.AdvanceTo(result.Buffer.GetPosition(n));
            count -= n;
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
