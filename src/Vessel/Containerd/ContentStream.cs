using Vessel.Common;
using Vessel.Oci;

namespace Vessel.Containerd;

/// <summary>
/// A forward-only stream over a blob in containerd's content store (Content/Read), as raw
/// bytes: <see cref="Oci.DigestVerifyingStream"/> above it checks the digest and size, as for
/// every other image source. Disposing it before the end cancels the call.
/// </summary>
internal sealed class ContentStream : ReadOnlyStream
{
    private readonly IAsyncEnumerator<ReadOnlyMemory<byte>> _chunks;
    private readonly CancellationTokenSource _cancel = new();
    private ReadOnlyMemory<byte> _current;
    private long _position;
    private bool _done;

    public ContentStream(ContainerdClient client, OciDigest digest)
    {
        _chunks = client.ReadContentAsync(digest, _cancel.Token).GetAsyncEnumerator(_cancel.Token);
    }

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException();
    }

    protected override async ValueTask<int> ReadCoreAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (_current.IsEmpty)
        {
            if (_done)
            {
                return 0;
            }
            using (cancellationToken.Register(static s => ((CancellationTokenSource)s!).Cancel(), _cancel))
            {
                _done = !await _chunks.MoveNextAsync();
            }
            cancellationToken.ThrowIfCancellationRequested();
            _current = _done ? default : _chunks.Current;
        }
        int n = Math.Min(buffer.Length, _current.Length);
        _current[..n].CopyTo(buffer);
        _current = _current[n..];
        _position += n;
        return n;
    }

    protected override async ValueTask ReleaseAsync()
    {
        _cancel.Cancel();
        try
        {
            // Ends the HTTP/2 stream (RST_STREAM) when the consumer stops early.
            await _chunks.DisposeAsync();
        }
        catch (OperationCanceledException)
        {
        }
        _cancel.Dispose();
    }
}
