using System.Security.Cryptography;

namespace Vessel.Blocks;

/// <summary>
/// A build going into a bucket: data cut into chunks and put (a few at a time) as it is
/// appended, with each chunk's SHA-256 noted; commit puts the last chunk, the chunk index, and
/// the header last. Disposed without a commit, it removes what it put.
/// </summary>
internal sealed class S3LayerUpload : ILayerUpload
{
    private readonly S3LayerStorage _storage;
    private readonly Guid _buildId;
    private readonly byte[] _buffer;
    private readonly List<byte[]> _digests = [];
    private readonly List<Task> _puts = [];
    private readonly SemaphoreSlim _inFlight;
    private int _filled;
    private long _length;
    private bool _committed;

    public S3LayerUpload(S3LayerStorage storage, Guid buildId, int chunkSize, int maxInFlight)
    {
        _storage = storage;
        _buildId = buildId;
        _buffer = new byte[chunkSize];
        _inFlight = new SemaphoreSlim(maxInFlight);
    }

    public async ValueTask AppendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (data.Length > 0)
        {
            int n = Math.Min(data.Length, _buffer.Length - _filled);
            data.Span[..n].CopyTo(_buffer.AsSpan(_filled));
            _filled += n;
            _length += n;
            data = data[n..];
            if (_filled == _buffer.Length)
            {
                await PutChunkAsync(cancellationToken);
            }
        }
    }

    public async Task CommitAsync(ReadOnlyMemory<byte> header, CancellationToken cancellationToken)
    {
        if (_filled > 0)
        {
            await PutChunkAsync(cancellationToken);
        }
        await Task.WhenAll(_puts);
        BuildHeader parsed = BuildHeader.Read(header.Span, $"build {_buildId}");
        if (await _storage.TryReadHeaderAsync(_buildId, cancellationToken) is not null)
        {
            throw new VesselException(VesselErrorReason.AlreadyExists, $"build {_buildId} already exists in {_storage.Location}.");
        }
        var index = new ChunkIndex
        {
            BuildId = _buildId,
            ChunkSize = _buffer.Length,
            DataLength = _length,
            DataSha256 = parsed.DataSha256,
            ChunkSha256 = _digests,
        };
        await _storage.PutAsync(_storage.Key(_buildId, S3LayerStorage.IndexName), index.ToBytes(), cancellationToken);
        await _storage.PutAsync(_storage.Key(_buildId, S3LayerStorage.HeaderName), header, cancellationToken);
        _committed = true;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Task.WhenAll(_puts);
        }
        catch (Exception)
        {
            // A failed put already failed the upload; what did land is removed below.
        }
        if (!_committed && _digests.Count > 0)
        {
            await _storage.DeletePrefixAsync(_storage.Key(_buildId, ""), CancellationToken.None);
        }
        _inFlight.Dispose();
    }

    private async Task PutChunkAsync(CancellationToken cancellationToken)
    {
        byte[] chunk = _buffer.AsSpan(0, _filled).ToArray();
        _filled = 0;
        int index = _digests.Count;
        _digests.Add(SHA256.HashData(chunk));
        // Surface an earlier failure before queueing more.
        foreach (Task done in _puts.Where(p => p.IsFaulted))
        {
            await done;
        }
        await _inFlight.WaitAsync(cancellationToken);
        _puts.Add(PutAsync());

        async Task PutAsync()
        {
            try
            {
                await _storage.PutAsync(_storage.Key(_buildId, S3LayerStorage.ChunkName(index)), chunk, cancellationToken);
            }
            finally
            {
                _inFlight.Release();
            }
        }
    }
}
