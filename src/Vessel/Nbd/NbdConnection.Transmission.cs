using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Vessel.Blocks;

namespace Vessel.Nbd;

/// <summary>The transmission phase (proto.md, "Transmission phase").</summary>
internal sealed partial class NbdConnection
{
    private const int MaxExtentsPerReply = 1024;
    private const int ReadPrefix = NbdStructuredReplyHeader.Size + 8; // chunk header + offset
    // Below this a reply is cheaper copied: sendfile costs two more syscalls (cachestat and a
    // separate header send), which outweigh copying a few pages; 4 KiB random reads stay copied.
    private const int SendFileMin = 64 << 10;
    private readonly SemaphoreSlim _inFlight;
    private int _pending;
    private readonly byte[] _fileReplyHeader = new byte[ReadPrefix]; // used only under the send lock
    private bool _sendFileWorks = true;

    // A reply split into more file stretches than this (a read across many small layer extents)
    // is cheaper copied than sent with one sendfile per stretch.
    private const int MaxSendFileRanges = 16;
    private static readonly byte[] s_zeros = new byte[64 << 10];
    private readonly List<FileRange> _fileRanges = []; // used only by the receive loop

    // Small replies gathered on the receive loop go out together at this size at the latest,
    // so the first of them is not held back long while more are read.
    private const int MaxBatchBytes = 256 << 10;
    private readonly List<ArraySegment<byte>> _batch = [];
    private int _batchBytes;

    private async Task TransmitAsync(Session session, CancellationToken ct)
    {
        NbdLog.Transmission(_logger, _peer, session.Export.Name, session.StructuredReplies);
        try
        {
            await ReceiveRequestsAsync(session, ct);
            await FlushRepliesAsync(ct);
        }
        finally
        {
            ReturnBatchedReplies();
        }
    }

    private async Task ReceiveRequestsAsync(Session session, CancellationToken ct)
    {
        byte[] header = new byte[NbdRequest.Size];
        while (await TryReadExactAsync(header, ct))
        {
            NbdRequest request = NbdRequest.Read(header);
            if (request.Command == NbdCommand.Read && await TryReplyReadCachedAsync(session, request, ct))
            {
                continue;
            }
            // Everything below may wait (for a payload, a free slot, the client): batched replies go out first.
            await FlushRepliesAsync(ct);
            if (request.Command == NbdCommand.Disconnect)
            {
                return; // DrainAsync lets in-flight requests finish before the socket closes
            }
            byte[]? payload = null;
            if (request.Command == NbdCommand.Write)
            {
                if (request.Length > NbdProtocol.MaxPayload)
                {
                    // The payload cannot be skipped safely at this size: the spec allows closing.
                    throw new NbdProtocolException($"Write of {request.Length} bytes exceeds the {NbdProtocol.MaxPayload}-byte maximum.");
                }
                payload = _server.Buffers.Rent((int)request.Length);
                try
                {
                    await ReadExactAsync(payload.AsMemory(0, (int)request.Length), ct);
                }
                catch
                {
                    _server.Buffers.Return(payload);
                    throw;
                }
            }
            try
            {
                await _inFlight.WaitAsync(ct);
            }
            catch
            {
                if (payload is not null)
                {
                    _server.Buffers.Return(payload);
                }
                throw;
            }
            Interlocked.Increment(ref _pending);
            _ = Task.Run(() => HandleAsync(session, request, payload, ct), CancellationToken.None);
        }
    }

    /// <summary>Waits for every request still being handled, so none writes to a closed socket or returned buffer.</summary>
    private async Task DrainAsync()
    {
        while (Volatile.Read(ref _pending) > 0)
        {
            await Task.Delay(5);
        }
    }

    private async Task HandleAsync(Session session, NbdRequest request, byte[]? payload, CancellationToken ct)
    {
        try
        {
            NbdError error = Validate(session, request);
            if (error != NbdError.None)
            {
                NbdLog.RequestRefused(_logger, _peer, request.Command, request.Offset, request.Length, error);
                await ReplyErrorAsync(session, request, error, ct);
                return;
            }
            INbdExport export = session.Export;
            long offset = (long)request.Offset;
            switch (request.Command)
            {
                case NbdCommand.Read:
                    await ReplyReadAsync(session, request, ct);
                    return;
                case NbdCommand.Write:
                    await export.WriteAsync(offset, payload.AsMemory(0, (int)request.Length), ct);
                    if (request.Flags.HasFlag(NbdCommandFlags.Fua))
                    {
                        await export.FlushAsync(ct);
                    }
                    break;
                case NbdCommand.Flush:
                    await export.FlushAsync(ct);
                    break;
                case NbdCommand.Trim:
                    await export.TrimAsync(offset, request.Length, ct);
                    break;
                case NbdCommand.WriteZeroes:
                    await export.WriteZeroesAsync(offset, request.Length, ct);
                    if (request.Flags.HasFlag(NbdCommandFlags.Fua))
                    {
                        await export.FlushAsync(ct);
                    }
                    break;
                case NbdCommand.BlockStatus:
                    await ReplyBlockStatusAsync(session, request, ct);
                    return;
            }
            await ReplySimpleAsync(request.Cookie, NbdError.None, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Connection closing.
        }
        catch (Exception e) when ((e is IOException or ObjectDisposedException) && ct.IsCancellationRequested)
        {
            // The client vanished while this request was being answered.
        }
        catch (Exception e)
        {
            NbdError error = e is VesselException { Reason: VesselErrorReason.NoSpace } || e is IOException { HResult: 28 }
                ? NbdError.NoSpace
                : NbdError.IO;
            NbdLog.RequestFailed(_logger, _peer, request.Command, request.Offset, request.Length, e);
            try
            {
                await ReplyErrorAsync(session, request, error, ct);
            }
            catch (Exception sendError) when (sendError is IOException or ObjectDisposedException or OperationCanceledException)
            {
                // The client is gone too.
            }
        }
        finally
        {
            if (payload is not null)
            {
                _server.Buffers.Return(payload);
            }
            Interlocked.Decrement(ref _pending);
            _inFlight.Release();
        }
    }

    private static NbdError Validate(Session session, NbdRequest request)
    {
        INbdExport export = session.Export;
        bool inRange = request.Offset <= (ulong)export.Size && request.Length <= (ulong)export.Size - request.Offset;
        switch (request.Command)
        {
            case NbdCommand.Read:
                if (request.Length > NbdProtocol.MaxPayload)
                {
                    return session.StructuredReplies ? NbdError.Overflow : NbdError.Invalid;
                }
                return inRange ? NbdError.None : NbdError.Invalid;
            case NbdCommand.Write:
            case NbdCommand.WriteZeroes:
                if (export.IsReadOnly)
                {
                    return NbdError.Perm;
                }
                return inRange ? NbdError.None : NbdError.NoSpace;
            case NbdCommand.Trim:
                if (export.IsReadOnly)
                {
                    return NbdError.Perm;
                }
                return inRange ? NbdError.None : NbdError.Invalid;
            case NbdCommand.Flush:
                return NbdError.None;
            case NbdCommand.BlockStatus:
                if (!session.BlockStatus)
                {
                    return NbdError.Invalid; // no meta context was negotiated
                }
                return inRange && request.Length > 0 ? NbdError.None : NbdError.Invalid;
            default:
                return NbdError.Invalid;
        }
    }

    /// <summary>
    /// Answers a read on the receive loop itself when the export can serve it without waiting
    /// for the disk (a page-cached file, zeros). Handing such a read to the thread pool costs
    /// more than the read: two thread hops per request, and on a busy machine the reply waits
    /// for a pool thread to be scheduled while the client sits with requests unanswered. Reads
    /// that would block, fail or are invalid return false and take the normal concurrent path,
    /// so a cold disk still gets many reads in flight and errors are reported in one place.
    /// </summary>
    private async ValueTask<bool> TryReplyReadCachedAsync(Session session, NbdRequest request, CancellationToken ct)
    {
        if (Validate(session, request) != NbdError.None)
        {
            return false;
        }
        int length = (int)request.Length;
        int prefix = ReadReplyPrefix(session);
        if (_sendFileWorks && length >= SendFileMin)
        {
            _fileRanges.Clear();
            if (session.Export.TryGetCachedFileRanges((long)request.Offset, length, _fileRanges) && _fileRanges.Count <= MaxSendFileRanges)
            {
                await FlushRepliesAsync(ct);
                await SendFileReplyAsync(session, request, _fileRanges, ct);
                return true;
            }
        }
        byte[]? message = _server.Buffers.Rent(prefix + length);
        try
        {
            bool cached;
            try
            {
                cached = session.Export.TryReadCached((long)request.Offset, message.AsSpan(prefix, length));
            }
            catch (Exception e) when (e is IOException or InvalidDataException or VesselException)
            {
                cached = false; // the normal path reads again and turns the failure into an NBD error
            }
            if (!cached)
            {
                return false;
            }
            WriteReadReplyHeader(session, request, message);
            _batch.Add(new ArraySegment<byte>(message, 0, prefix + length));
            _batchBytes += prefix + length;
            message = null; // the batch returns it
            if (_batchBytes >= MaxBatchBytes || !RequestBuffered())
            {
                await FlushRepliesAsync(ct);
            }
            return true;
        }
        finally
        {
            if (message is not null)
            {
                _server.Buffers.Return(message);
            }
        }
    }

    /// <summary>True when the next request header is already buffered, so reading it cannot wait.</summary>
    private bool RequestBuffered()
    {
        if (!_reader.TryRead(out ReadResult result))
        {
            return false;
        }
        bool buffered = result.Buffer.Length >= NbdRequest.Size;
        _reader.AdvanceTo(result.Buffer.Start);
        return buffered;
    }

    /// <summary>
    /// Sends the read replies copied on the receive loop since the last flush, in one
    /// gathered send (sendmsg with one iovec each): 4 KiB reads that arrive together cost one
    /// send instead of one each. The loop flushes before anything that can wait, so a reply is
    /// never held back while the server waits for the client.
    /// </summary>
    private async ValueTask FlushRepliesAsync(CancellationToken ct)
    {
        if (_batch.Count == 0)
        {
            return;
        }
        await _sendLock.WaitAsync(ct);
        try
        {
            await _socket.SendAsync(_batch, SocketFlags.None);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            CancelQuietly();
            throw;
        }
        finally
        {
            _sendLock.Release();
        }
        ReturnBatchedReplies();
    }

    private void ReturnBatchedReplies()
    {
        foreach (ArraySegment<byte> reply in _batch)
        {
            _server.Buffers.Return(reply.Array!);
        }
        _batch.Clear();
        _batchBytes = 0;
    }

    private async Task ReplyReadAsync(Session session, NbdRequest request, CancellationToken ct)
    {
        int length = (int)request.Length;
        int prefix = ReadReplyPrefix(session);
        byte[] message = _server.Buffers.Rent(prefix + length);
        try
        {
            // Read straight behind the reply header so the whole reply goes out in one send.
            await session.Export.ReadAsync((long)request.Offset, message.AsMemory(prefix, length), ct);
            WriteReadReplyHeader(session, request, message);
            await SendAsync(message.AsMemory(0, prefix + length), ct);
        }
        finally
        {
            _server.Buffers.Return(message);
        }
    }

    /// <summary>
    /// A read reply whose data goes from the page cache to the socket by sendfile, one call per
    /// file stretch (zeros are written from a shared zero buffer): no copy into this process and
    /// none out of it (Linux 6.5+ splices the pages into a unix socket). What the socket buffer
    /// cannot take now is read and sent the ordinary way.
    /// </summary>
    private async ValueTask SendFileReplyAsync(Session session, NbdRequest request, List<FileRange> ranges, CancellationToken ct)
    {
        int prefix = ReadReplyPrefix(session);
        await _sendLock.WaitAsync(ct);
        try
        {
            WriteReadReplyHeader(session, request, _fileReplyHeader);
            await _stream.WriteAsync(_fileReplyHeader.AsMemory(0, prefix), ct);
            foreach (FileRange range in ranges)
            {
                if (range.File is null)
                {
                    for (int left = range.Length; left > 0; left -= Math.Min(left, s_zeros.Length))
                    {
                        await _stream.WriteAsync(s_zeros.AsMemory(0, Math.Min(left, s_zeros.Length)), ct);
                    }
                    continue;
                }
                int sent = _sendFileWorks ? LinuxFile.SendFile(_socket.SafeHandle, range.File, range.Offset, range.Length) : 0;
                if (sent < 0)
                {
                    _sendFileWorks = false; // not for this socket: copy from now on
                    sent = 0;
                }
                if (sent < range.Length)
                {
                    await SendCopiedAsync(range.File, range.Offset + sent, range.Length - sent, ct);
                }
            }
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

    /// <summary>The part of a file range sendfile could not send now: read it and send it like any reply.</summary>
    private async ValueTask SendCopiedAsync(SafeFileHandle file, long offset, int length, CancellationToken ct)
    {
        byte[] rest = _server.Buffers.Rent(length);
        try
        {
            Span<byte> span = rest.AsSpan(0, length);
            for (long at = offset; span.Length > 0;)
            {
                int n = RandomAccess.Read(file, span, at);
                if (n == 0)
                {
                    // The header is out already, so no error reply can follow: drop the client.
                    throw new IOException($"The served file ended at {at} during a read reply.");
                }
                span = span[n..];
                at += n;
            }
            await _stream.WriteAsync(rest.AsMemory(0, length), ct);
        }
        finally
        {
            _server.Buffers.Return(rest);
        }
    }

    private static int ReadReplyPrefix(Session session) => session.StructuredReplies ? ReadPrefix : NbdSimpleReply.Size;

    /// <summary>A read's data goes out as one OffsetData chunk (structured) or behind a simple reply.</summary>
    private static void WriteReadReplyHeader(Session session, NbdRequest request, Span<byte> message)
    {
        if (session.StructuredReplies)
        {
            new NbdStructuredReplyHeader(true, NbdReplyType.OffsetData, request.Cookie, 8 + request.Length).Write(message);
            BinaryPrimitives.WriteUInt64BigEndian(message[NbdStructuredReplyHeader.Size..], request.Offset);
        }
        else
        {
            new NbdSimpleReply(NbdError.None, request.Cookie).Write(message);
        }
    }

    private async Task ReplyBlockStatusAsync(Session session, NbdRequest request, CancellationToken ct)
    {
        int max = request.Flags.HasFlag(NbdCommandFlags.RequestOne) ? 1 : MaxExtentsPerReply;
        IReadOnlyList<DeviceExtent> extents = session.Export.GetBlockStatus((long)request.Offset, request.Length, max);
        int count = Math.Min(extents.Count, max);
        byte[] message = new byte[NbdStructuredReplyHeader.Size + 4 + (8 * count)];
        new NbdStructuredReplyHeader(true, NbdReplyType.BlockStatus, request.Cookie, (uint)(4 + (8 * count))).Write(message);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(NbdStructuredReplyHeader.Size), NbdProtocol.BaseAllocationContextId);
        int at = NbdStructuredReplyHeader.Size + 4;
        for (int i = 0; i < count; i++)
        {
            NbdAllocationFlags flags = extents[i].Kind == ExtentKind.Zero ? NbdAllocationFlags.Hole | NbdAllocationFlags.Zero : NbdAllocationFlags.Data;
            BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(at), (uint)extents[i].Length);
            BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(at + 4), (uint)flags);
            at += 8;
        }
        await SendAsync(message, ct);
    }

    private async ValueTask ReplySimpleAsync(ulong cookie, NbdError error, CancellationToken ct)
    {
        byte[] message = new byte[NbdSimpleReply.Size];
        new NbdSimpleReply(error, cookie).Write(message);
        await SendAsync(message, ct);
    }

    private async ValueTask ReplyErrorAsync(Session session, NbdRequest request, NbdError error, CancellationToken ct)
    {
        // Reads and block status must answer in structured form once it is negotiated.
        if (!session.StructuredReplies || request.Command is not (NbdCommand.Read or NbdCommand.BlockStatus))
        {
            await ReplySimpleAsync(request.Cookie, error, ct);
            return;
        }
        byte[] text = Encoding.UTF8.GetBytes($"{request.Command} at {request.Offset}+{request.Length}: {error}");
        byte[] message = new byte[NbdStructuredReplyHeader.Size + 6 + text.Length];
        new NbdStructuredReplyHeader(true, NbdReplyType.Error, request.Cookie, (uint)(6 + text.Length)).Write(message);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(NbdStructuredReplyHeader.Size), (uint)error);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(NbdStructuredReplyHeader.Size + 4), (ushort)text.Length);
        text.CopyTo(message, NbdStructuredReplyHeader.Size + 6);
        await SendAsync(message, ct);
    }
}
