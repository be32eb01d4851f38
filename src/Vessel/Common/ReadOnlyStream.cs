using System.Buffers;

namespace Vessel.Common;

/// <summary>
/// The base of Vessel's read-only streams (forward-only unless a subclass seeks). It holds once
/// what each of them would otherwise repeat: the write, seek and length members that throw, argument validation, a
/// cancelled token or a disposed stream checked before any read, and an idempotent dispose.
/// A subclass writes <see cref="ReadCoreAsync"/> and, where its source can read synchronously,
/// <see cref="ReadCore"/> (shaped like dotnet/runtime's streams: one body per direction).
/// </summary>
public abstract class ReadOnlyStream : Stream
{
    private bool _disposed;

    public override bool CanRead => !_disposed;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    /// <summary>Bytes read so far, where a subclass counts them; setting it is not supported.</summary>
    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <summary>True once disposed.</summary>
    protected bool IsDisposed => _disposed;

    public sealed override int Read(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        return Read(buffer.AsSpan(offset, count));
    }

    public sealed override int Read(Span<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return buffer.IsEmpty ? 0 : ReadCore(buffer);
    }

    public sealed override int ReadByte()
    {
        Span<byte> one = stackalloc byte[1];
        return Read(one) == 0 ? -1 : one[0];
    }

    public sealed override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        ValidateBufferArguments(buffer, offset, count);
        return ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    public sealed override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }
        if (_disposed)
        {
            return ValueTask.FromException<int>(new ObjectDisposedException(GetType().Name));
        }
        return buffer.IsEmpty ? ValueTask.FromResult(0) : ReadCoreAsync(buffer, cancellationToken);
    }

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) =>
        cancellationToken.IsCancellationRequested ? Task.FromCanceled(cancellationToken) : Task.CompletedTask;

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public sealed override void SetLength(long value) => throw new NotSupportedException();

    public sealed override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public sealed override void Write(ReadOnlySpan<byte> buffer) => throw new NotSupportedException();

    public sealed override void WriteByte(byte value) => throw new NotSupportedException();

    public sealed override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Task.FromException(new NotSupportedException());

    public sealed override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        ValueTask.FromException(new NotSupportedException());

    public sealed override async ValueTask DisposeAsync()
    {
        if (!_disposed)
        {
            _disposed = true;
            await ReleaseAsync();
        }
        await base.DisposeAsync();
    }

    /// <summary>Reads at least one byte into a non-empty <paramref name="buffer"/>, or returns 0 at the end.</summary>
    protected abstract ValueTask<int> ReadCoreAsync(Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>
    /// The synchronous read. The default is for sources that are asynchronous only (a channel,
    /// a gRPC stream): it waits for <see cref="ReadCoreAsync"/>. Streams over a synchronous
    /// source override it.
    /// </summary>
    protected virtual int ReadCore(Span<byte> buffer)
    {
        byte[] rented = ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            // The one blocking wait of Vessel's read streams: a caller chose the synchronous API
            // over a source that only has an asynchronous one.
            int n = ReadCoreAsync(rented.AsMemory(0, buffer.Length), CancellationToken.None).AsTask().GetAwaiter().GetResult();
            rented.AsSpan(0, n).CopyTo(buffer);
            return n;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Releases what the stream owns; called once, from either dispose.</summary>
    protected virtual ValueTask ReleaseAsync() => default;

    protected sealed override void Dispose(bool disposing)
    {
        if (disposing && !_disposed)
        {
            _disposed = true;
            // Completes synchronously for streams whose resources are synchronous; the others
            // (a process, a channel pump) have no synchronous release, and this is the only wait.
            ReleaseAsync().AsTask().GetAwaiter().GetResult();
        }
        base.Dispose(disposing);
    }
}
