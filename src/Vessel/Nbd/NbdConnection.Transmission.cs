using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Vessel.Blocks;
using Vessel.Common;

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
    private bool _sendFileWorks = true;

    // A reply split into more file stretches than this (a read across many small layer extents)
    // is cheaper copied than sent with one sendfile per stretch.
    private const int MaxSendFileRanges = 16;
    private static readonly byte[] s_zeros = new byte[64 << 10];
    private readonly List<FileRange> _fileRanges = []; // used only by the connection's thread

    // Replies copied on the connection's thread are laid out back to back in one buffer and leave
    // in one send: when nothing more is there to read, or at MaxBatchBytes at the latest, so
    // the first of them is not held back long while more are read.
    private const int ReplyBufferSize = 512 << 10;
    private const int MaxBatchBytes = 256 << 10;
    private byte[] _replies = []; // used only by the connection's thread
    private int _repliesLength;

    /// <summary>
    /// The receive loop, synchronous on the connection's thread: each recv takes every request header
    /// the client has sent; reads the page cache can answer are copied (preadv2 RWF_NOWAIT)
    /// behind their reply headers in one buffer, or sent by sendfile, and the buffer goes out
    /// in one send once nothing more is there to read. A 4 KiB read then costs one preadv2 and
    /// a share of one recv and one send, with no allocation, thread hop or async state machine.
    /// Everything else (writes, reads that would wait for the disk, errors) goes to the thread
    /// pool as before, 64 in flight, and replies there under the send lock.
    /// </summary>
    private void ReceiveRequests(Session session, CancellationToken ct)
    {
        while (true)
        {
            if (_inputEnd - _inputStart < NbdRequest.Size)
            {
                if (FillInput(ct) == 0)
                {
                    if (_inputEnd > 0)
                    {
                        throw new EndOfStreamException("The client closed the connection mid-request.");
                    }
                    FlushReplies(ct); // a client that only shut down its sending side still gets these
                    return;
                }
                continue;
            }
            NbdRequest request = NbdRequest.Read(_input.AsSpan(_inputStart, NbdRequest.Size));
            _inputStart += NbdRequest.Size;
            if (request.Command == NbdCommand.Read && TryReplyReadCached(session, request, ct))
            {
                continue;
            }
            // Everything below may wait (for a payload, a free slot): the replies ready go out first.
            FlushReplies(ct);
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
                    ReadExact(payload.AsSpan(0, (int)request.Length), ct);
                }
                catch
                {
                    _server.Buffers.Return(payload);
                    throw;
                }
            }
            try
            {
                _inFlight.Wait(ct);
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

    /// <summary>Sends the replies gathered on the connection's thread since the last flush, in one send.</summary>
    private void FlushReplies(CancellationToken ct)
    {
        if (_repliesLength == 0)
        {
            return;
        }
        _sendLock.Wait(ct);
        try
        {
            SendAll(_replies.AsSpan(0, _repliesLength), ct);
            _repliesLength = 0;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            CancelQuietly(); // the client is gone: stop everything else on this connection too
            throw;
        }
        finally
        {
            _sendLock.Release();
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
            NbdExport export = session.Export;
            long offset = (long)request.Offset;
            switch (request.Command)
            {
                case NbdCommand.Read:
                    await ReplyReadAsync(session, request, ct);
                    return;
                case NbdCommand.Write:
                    await export.Device.WriteAsync(offset, payload.AsMemory(0, (int)request.Length), ct);
                    if (request.Flags.HasFlag(NbdCommandFlags.Fua))
                    {
                        await export.Device.FlushAsync(ct);
                    }
                    break;
                case NbdCommand.Flush:
                    await export.Device.FlushAsync(ct);
                    break;
                case NbdCommand.Trim:
                    await export.Device.TrimAsync(offset, request.Length, ct);
                    break;
                case NbdCommand.WriteZeroes:
                    await export.Device.WriteZeroesAsync(offset, request.Length, ct);
                    if (request.Flags.HasFlag(NbdCommandFlags.Fua))
                    {
                        await export.Device.FlushAsync(ct);
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
        NbdExport export = session.Export;
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
    /// Answers a read on the connection's thread itself when the export can serve it without waiting
    /// for the disk (a page-cached file, zeros). Handing such a read to the thread pool costs
    /// more than the read: two thread hops per request, and on a busy machine the reply waits
    /// for a pool thread to be scheduled while the client sits with requests unanswered. Reads
    /// that would block, fail or are invalid return false and take the normal concurrent path,
    /// so a cold disk still gets many reads in flight and errors are reported in one place.
    /// </summary>
    private bool TryReplyReadCached(Session session, NbdRequest request, CancellationToken ct)
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
            if (session.Export.Device.TryGetCachedFileRanges((long)request.Offset, length, _fileRanges) && _fileRanges.Count <= MaxSendFileRanges)
            {
                SendFileReply(session, request, _fileRanges, ct);
                return true;
            }
        }
        int size = prefix + length;
        if (size > _replies.Length)
        {
            return TryReplyLargeReadCached(session, request, ct);
        }
        if (_repliesLength + size > _replies.Length)
        {
            FlushReplies(ct);
        }
        Span<byte> reply = _replies.AsSpan(_repliesLength, size);
        if (!TryReadCached(session, request, reply[prefix..]))
        {
            return false;
        }
        WriteReadReplyHeader(session, request, reply);
        _repliesLength += size;
        if (_repliesLength >= MaxBatchBytes)
        {
            FlushReplies(ct);
        }
        return true;
    }

    private static bool TryReadCached(Session session, NbdRequest request, Span<byte> destination)
    {
        try
        {
            return session.Export.Device.TryReadCached((long)request.Offset, destination);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or VesselException)
        {
            return false; // the normal path reads again and turns the failure into an NBD error
        }
    }

    /// <summary>A cached read larger than the reply buffer (and not sent by sendfile): its own buffer, its own send.</summary>
    private bool TryReplyLargeReadCached(Session session, NbdRequest request, CancellationToken ct)
    {
        int size = ReadReplyPrefix(session) + (int)request.Length;
        byte[] message = _server.Buffers.Rent(size);
        try
        {
            if (!TryReadCached(session, request, message.AsSpan(ReadReplyPrefix(session), (int)request.Length)))
            {
                return false;
            }
            WriteReadReplyHeader(session, request, message);
            FlushReplies(ct);
            _sendLock.Wait(ct);
            try
            {
                SendAll(message.AsSpan(0, size), ct);
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
            return true;
        }
        finally
        {
            _server.Buffers.Return(message);
        }
    }

    private async Task ReplyReadAsync(Session session, NbdRequest request, CancellationToken ct)
    {
        int length = (int)request.Length;
        int prefix = ReadReplyPrefix(session);
        byte[] message = _server.Buffers.Rent(prefix + length);
        try
        {
            // Read straight behind the reply header so the whole reply goes out in one send.
            await session.Export.Device.ReadAsync((long)request.Offset, message.AsMemory(prefix, length), ct);
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
    /// none out of it (Linux 6.5+ splices the pages into a unix socket). The reply header leaves
    /// with the replies gathered before it, in one send.
    /// </summary>
    private void SendFileReply(Session session, NbdRequest request, List<FileRange> ranges, CancellationToken ct)
    {
        int prefix = ReadReplyPrefix(session);
        if (_repliesLength + prefix > _replies.Length)
        {
            FlushReplies(ct);
        }
        WriteReadReplyHeader(session, request, _replies.AsSpan(_repliesLength, prefix));
        _repliesLength += prefix;
        _sendLock.Wait(ct);
        try
        {
            SendAll(_replies.AsSpan(0, _repliesLength), ct);
            _repliesLength = 0;
            foreach (FileRange range in ranges)
            {
                if (range.File is null)
                {
                    for (int left = range.Length; left > 0; left -= Math.Min(left, s_zeros.Length))
                    {
                        SendAll(s_zeros.AsSpan(0, Math.Min(left, s_zeros.Length)), ct);
                    }
                    continue;
                }
                SendFileRange(range.File, range.Offset, range.Length, ct);
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

    /// <summary>One file stretch by sendfile, waiting while the socket buffer is full; copied where sendfile cannot be used.</summary>
    private void SendFileRange(SafeFileHandle file, long offset, int length, CancellationToken ct)
    {
        bool waited = false;
        while (length > 0)
        {
            int sent = _sendFileWorks ? LinuxFile.SendFile(_socket.SafeHandle, file, offset, length) : -1;
            if (sent < 0)
            {
                _sendFileWorks = false; // not for this socket: copy from now on
                SendCopied(file, offset, length, ct);
                return;
            }
            if (sent == 0)
            {
                if (waited)
                {
                    // Nothing sent to a socket that could take more: the file ended, which the copy reports.
                    SendCopied(file, offset, length, ct);
                    return;
                }
                WaitForSocket(write: true, ct);
                waited = true;
                continue;
            }
            offset += sent;
            length -= sent;
            waited = false;
        }
    }

    /// <summary>A file stretch sendfile could not send: read it and send it like any reply.</summary>
    private void SendCopied(SafeFileHandle file, long offset, int length, CancellationToken ct)
    {
        byte[] rest = _server.Buffers.Rent(length);
        try
        {
            int n = PositionalRead.Fill(file, rest.AsSpan(0, length), offset);
            if (n < length)
            {
                // The header is out already, so no error reply can follow: drop the client.
                throw new IOException($"The served file ended at {offset + n} during a read reply.");
            }
            SendAll(rest.AsSpan(0, length), ct);
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
        IReadOnlyList<DeviceExtent> extents = session.Export.Device.GetExtents((long)request.Offset, request.Length, max);
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
