using System.Buffers;
using System.Threading.Channels;

namespace Vessel.Common;

/// <summary>
/// Reads an inner stream on a background task into a few pooled buffers, so that the
/// producer's work (decompression, digest checks, disk reads) runs on another core while
/// the consumer works. Errors of the inner stream surface on the consumer's next read.
/// Disposal cancels the reader and disposes the inner stream. A consumer that knows it
/// (<see cref="IBufferLendingStream"/>) reads the chunks in place instead of through a copy.
/// </summary>
public sealed class ReadAheadStream : ReadOnlyStream, IBufferLendingStream
{
    private readonly Stream _inner;
    private readonly Channel<(byte[] Buffer, int Length)> _chunks;
    private readonly CancellationTokenSource _cts = new();
    private readonly Task _pump;
    private readonly int _chunkSize;
    private byte[]? _current;
    private int _currentLength;
    private int _currentPos;
    private bool _done;

    public ReadAheadStream(Stream inner, int chunkSize = 1 << 20, int chunks = 4)
    {
        _inner = inner;
        _chunkSize = chunkSize;
        _chunks = Channel.CreateBounded<(byte[], int)>(new BoundedChannelOptions(chunks) { SingleReader = true, SingleWriter = true });
        _pump = Task.Run(PumpAsync);
    }

    private async Task PumpAsync()
    {
        try
        {
            while (true)
            {
                byte[] buffer = ArrayPool<byte>.Shared.Rent(_chunkSize);
                int filled = 0;
                try
                {
                    // Fill the chunk fully (small reads from a decompressor would cost a hand-off each).
                    while (filled < _chunkSize)
                    {
                        int n = await _inner.ReadAsync(buffer.AsMemory(filled, _chunkSize - filled), _cts.Token);
                        if (n == 0)
                        {
                            break;
                        }
                        filled += n;
                    }
                }
                catch
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    throw;
                }
                if (filled == 0)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    _chunks.Writer.TryComplete();
                    return;
                }
                await _chunks.Writer.WriteAsync((buffer, filled), _cts.Token);
            }
        }
        catch (Exception e)
        {
            _chunks.Writer.TryComplete(e);
        }
    }

    protected override async ValueTask<int> ReadCoreAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (!await EnsureChunkAsync(cancellationToken))
        {
            return 0;
        }
        int take = Math.Min(destination.Length, _currentLength - _currentPos);
        _current!.AsMemory(_currentPos, take).CopyTo(destination);
        _currentPos += take;
        return take;
    }

    /// <summary>
    /// The rest of the current chunk without a copy: the consumer reads the producer's buffer
    /// in place. It goes back to the pool on the next read, which is what makes the segment
    /// valid until then.
    /// </summary>
    async ValueTask<ArraySegment<byte>> IBufferLendingStream.ReadLentAsync(CancellationToken cancellationToken)
    {
        if (!await EnsureChunkAsync(cancellationToken))
        {
            return ArraySegment<byte>.Empty;
        }
        var lent = new ArraySegment<byte>(_current!, _currentPos, _currentLength - _currentPos);
        _currentPos = _currentLength;
        return lent;
    }

    /// <summary>Makes <see cref="_current"/> hold unread bytes; false at the end of the stream.</summary>
    private async ValueTask<bool> EnsureChunkAsync(CancellationToken cancellationToken)
    {
        while (_current is null || _currentPos == _currentLength)
        {
            if (_current is not null)
            {
                ArrayPool<byte>.Shared.Return(_current);
                _current = null;
            }
            if (_done)
            {
                return false;
            }
            try
            {
                (_current, _currentLength) = await _chunks.Reader.ReadAsync(cancellationToken);
                _currentPos = 0;
            }
            catch (ChannelClosedException e)
            {
                _done = true;
                if (e.InnerException is not null)
                {
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
                }
                return false;
            }
        }
        return true;
    }

    protected override async ValueTask ReleaseAsync()
    {
        await _cts.CancelAsync();
        try
        {
            await _pump;
        }
        catch (OperationCanceledException)
        {
        }
        while (_chunks.Reader.TryRead(out var chunk))
        {
            ArrayPool<byte>.Shared.Return(chunk.Buffer);
        }
        if (_current is not null)
        {
            ArrayPool<byte>.Shared.Return(_current);
            _current = null;
        }
        await _inner.DisposeAsync();
        _cts.Dispose();
    }
}
