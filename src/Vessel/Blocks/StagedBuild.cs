using System.Security.Cryptography;

namespace Vessel.Blocks;

/// <summary>
/// A build being written: data appended in storage order while its SHA-256 is computed, then
/// published with its header in one atomic step. A staged build that failed is faulted: it
/// refuses further calls, so a half-written build is never published.
/// </summary>
internal sealed class StagedBuild(Guid id, ILayerUpload upload) : IAsyncDisposable
{
    private readonly ILayerUpload _upload = upload;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private Exception? _fault;
    private bool _committed;

    public Guid Id { get; } = id;

    /// <summary>Bytes of data appended so far: the storage offset of the next append.</summary>
    public long Length { get; private set; }

    public async ValueTask AppendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        ThrowIfFaulted();
        try
        {
            _hash.AppendData(data.Span);
            await _upload.AppendAsync(data, cancellationToken);
            Length += data.Length;
        }
        catch (Exception e)
        {
            _fault = e;
            throw;
        }
    }

    /// <summary>Fills in the data length and hash of <paramref name="header"/> and publishes the build.</summary>
    public async Task<BuildHeader> CommitAsync(BuildHeader header, CancellationToken cancellationToken)
    {
        ThrowIfFaulted();
        if (header.BuildId != Id)
        {
            throw new ArgumentException("The header names another build.", nameof(header));
        }
        try
        {
            BuildHeader complete = header with { DataLength = Length, DataSha256 = _hash.GetHashAndReset() };
            await _upload.CommitAsync(complete.ToBytes(), cancellationToken);
            _committed = true;
            return complete;
        }
        catch (Exception e)
        {
            _fault = e;
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _hash.Dispose();
        await _upload.DisposeAsync();
    }

    private void ThrowIfFaulted()
    {
        if (_fault is not null)
        {
            throw new InvalidOperationException($"build {Id} failed earlier and cannot continue: {_fault.Message}", _fault);
        }
        if (_committed)
        {
            throw new InvalidOperationException($"build {Id} is already published.");
        }
    }
}
