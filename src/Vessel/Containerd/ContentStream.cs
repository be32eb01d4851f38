using System.Security.Cryptography;

namespace Vessel.Containerd;

/// <summary>
/// A forward-only stream over a blob in containerd's content store (Content/Read). The bytes
/// are hashed as they pass: the read that reaches the end throws when the sha256 does not
/// match the digest, so a consumer that reads to the end never trusts corrupted content.
/// </summary>
internal sealed class ContentStream : Stream
{
    private readonly IAsyncEnumerator<ReadOnlyMemory<byte>> _chunks;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly string _digest;
    private readonly long _expectedSize;
    private readonly CancellationTokenSource _cancel = new();
    private ReadOnlyMemory<byte> _current;
    private long _position;
    private bool _done;
    private bool _disposed;

    /// <param name="expectedSize">The descriptor's size, checked at the end; -1 when unknown.</param>
    public ContentStream(ContainerdClient client, string digest, long expectedSize)
    {
        _digest = digest;
        _expectedSize = expectedSize;
        _chunks = client.ReadContentAsync(digest, _cancel.Token).GetAsyncEnumerator(_cancel.Token);
    }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException();
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }
        while (_current.IsEmpty)
        {
            if (_done)
            {
                return 0;
            }
            bool more;
            using (cancellationToken.Register(static s => ((CancellationTokenSource)s!).Cancel(), _cancel))
            {
                more = await _chunks.MoveNextAsync();
            }
            if (!more)
            {
                _done = true;
                Verify();
                return 0;
            }
            _current = _chunks.Current;
            _hash.AppendData(_current.Span);
        }
        int n = Math.Min(buffer.Length, _current.Length);
        _current[..n].CopyTo(buffer);
        _current = _current[n..];
        _position += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count).GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override async ValueTask DisposeAsync()
    {
        if (!_disposed)
        {
            _disposed = true;
            _cancel.Cancel();
            try
            {
                // Ends the HTTP/2 stream (RST_STREAM) when the consumer stops early.
                await _chunks.DisposeAsync();
            }
            catch (OperationCanceledException)
            {
            }
            _hash.Dispose();
            _cancel.Dispose();
        }
        await base.DisposeAsync();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_disposed)
        {
            DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        base.Dispose(disposing);
    }

    private void Verify()
    {
        if (_expectedSize >= 0 && _position != _expectedSize)
        {
            throw new VesselException(VesselErrorReason.Corrupt,
                $"Blob {_digest}: containerd sent {_position} bytes, the descriptor says {_expectedSize}.");
        }
        string actual = "sha256:" + Convert.ToHexStringLower(_hash.GetHashAndReset());
        if (actual != _digest)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"Blob {_digest}: content hashes to {actual}; the content store is corrupt.");
        }
    }
}
