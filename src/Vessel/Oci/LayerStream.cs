using System.IO.Compression;
using System.Security.Cryptography;
using Vessel.Common;

namespace Vessel.Oci;

/// <summary>
/// A layer as an uncompressed tar stream. Below it, a <see cref="DigestVerifyingStream"/>
/// checks the blob; the compression is taken from the blob's first bytes (gzip 1f 8b, zstd
/// 28 b5 2f fd), whatever the media type says, since mislabelled layers exist. When the
/// decompressor reports the end, the rest of the blob is drained (a gzip decoder may stop
/// before the blob's last byte), the blob digest is checked and, when known, the digest of
/// the uncompressed tar (the config's diff_id). Only then does a read return 0.
/// </summary>
internal sealed class LayerStream : ReadOnlyStream
{
    private const int ReadAheadSize = 256 << 10;
    private const long MaxDrainForDiagnosis = 256L << 20; // reading more than this just to word an error is not worth it

    private static ReadOnlySpan<byte> GzipMagic => [0x1f, 0x8b];

    private static ReadOnlySpan<byte> ZstdMagic => [0x28, 0xb5, 0x2f, 0xfd];

    private readonly Stream _decoded;
    private readonly DigestVerifyingStream _blob;
    private readonly LayerCompression _compression;
    private readonly OciDigest? _diffId;
    private readonly bool _checkGzipLength;
    private readonly string _what;
    private readonly IncrementalHash? _diffHash;
    private long _length;
    private bool _finished;
    private Exception? _fault;

    private LayerStream(Stream decoded, DigestVerifyingStream blob, LayerCompression compression, OciDigest? diffId, bool checkGzipLength, string what)
    {
        _decoded = decoded;
        _blob = blob;
        _compression = compression;
        _diffId = diffId;
        _checkGzipLength = checkGzipLength;
        _what = what;
        if (diffId is not null)
        {
            _diffHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        }
    }

    public LayerCompression Compression => _compression;

    /// <summary>
    /// Wraps a verified blob. <paramref name="diffId"/>: the uncompressed digest to check as
    /// well (skipped when it equals the blob digest). <paramref name="checkGzipLength"/>: compare
    /// the output length with the gzip trailer, for blobs no digest protects against
    /// truncation (.NET's decoder returns end-of-stream on a truncated gzip without an error).
    /// </summary>
    public static async Task<LayerStream> OpenAsync(
        DigestVerifyingStream blob, OciDigest? diffId, bool checkGzipLength, string what, CancellationToken cancellationToken)
    {
        try
        {
            byte[] magic = new byte[ZstdMagic.Length];
            int have = 0;
            while (have < magic.Length)
            {
                int n = await blob.ReadAsync(magic.AsMemory(have), cancellationToken);
                if (n == 0)
                {
                    break;
                }
                have += n;
            }
            var head = new PrefixedStream(magic.AsMemory(0, have), blob, leaveOpen: true);
            LayerCompression compression = magic.AsSpan(0, have).StartsWith(GzipMagic) ? LayerCompression.Gzip
                : magic.AsSpan(0, have).StartsWith(ZstdMagic) ? LayerCompression.Zstd
                : LayerCompression.None;
            Stream decoded = compression switch
            {
                // GZipStream pulls 8 KiB at a time; bigger reads from the blob cut the per-call cost through HTTP and hashing.
                LayerCompression.Gzip => new GZipStream(new BufferedStream(head, ReadAheadSize), CompressionMode.Decompress, leaveOpen: true),
                LayerCompression.Zstd => ZstdProcessStream.Start(head, what),
                _ => head,
            };
            return new LayerStream(decoded, blob, compression, diffId is not null && diffId == blob.Expected ? null : diffId, checkGzipLength, what);
        }
        catch
        {
            await blob.DisposeAsync();
            throw;
        }
    }

    public override long Position
    {
        get => _length;
        set => throw new NotSupportedException();
    }

    protected override async ValueTask<int> ReadCoreAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (_fault is not null)
        {
            throw _fault;
        }
        if (_finished)
        {
            return 0;
        }
        int n;
        try
        {
            n = await _decoded.ReadAsync(buffer, cancellationToken);
        }
        catch (Exception e) when (IsDecoderFailure(e))
        {
            throw Fail(await ExplainDecoderFailureAsync(e, cancellationToken));
        }
        if (n > 0)
        {
            Account(buffer.Span[..n]);
            return n;
        }
        try
        {
            await _blob.DrainAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw Fail(e);
        }
        Finish();
        return 0;
    }

    protected override async ValueTask ReleaseAsync()
    {
        await _decoded.DisposeAsync();
        await _blob.DisposeAsync();
        _diffHash?.Dispose();
    }

    private void Account(ReadOnlySpan<byte> data)
    {
        _length += data.Length;
        _diffHash?.AppendData(data);
    }

    private void Finish()
    {
        if (_diffHash is not null && _diffId is OciDigest expected)
        {
            Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
            _diffHash.GetHashAndReset(hash);
            OciDigest actual = OciDigest.FromHash(hash);
            if (actual != expected)
            {
                throw Fail(BlobErrors.Mismatch(
                    $"{_what}: the uncompressed layer does not match the config's diff_id: expected {expected}, got {actual}. The layer is corrupt or truncated."));
            }
        }
        if (_checkGzipLength && _compression == LayerCompression.Gzip && _blob.BytesRead >= 18 && (uint)_length != _blob.GzipTrailerLength)
        {
            throw Fail(new InvalidDataException(
                $"{_what}: the gzip data is truncated or corrupt: it decoded to {_length} bytes but its trailer records {_blob.GzipTrailerLength} (modulo 2^32)."));
        }
        _finished = true;
    }

    /// <summary>
    /// A blob damaged in storage or transit usually breaks the decoder before its end is
    /// reached. The digest is the better diagnosis, so the rest of the blob is read (when no
    /// more than <see cref="MaxDrainForDiagnosis"/> is left) and a mismatch reported instead.
    /// </summary>
    private async Task<Exception> ExplainDecoderFailureAsync(Exception decoderError, CancellationToken cancellationToken)
    {
        if (_blob.Expected is not null && _blob.Remaining is long remaining && remaining <= MaxDrainForDiagnosis)
        {
            try
            {
                await _blob.DrainAsync(cancellationToken);
            }
            catch (InvalidDataException e) when (BlobErrors.IsMismatch(e))
            {
                return e;
            }
            catch (Exception e) when (e is IOException or InvalidDataException)
            {
                // The decoder's error stands.
            }
        }
        return DecoderError(decoderError);
    }

    private static bool IsDecoderFailure(Exception e) =>
        e is InvalidDataException && !BlobErrors.IsMismatch(e);

    private InvalidDataException DecoderError(Exception e) => ZstdProcessStream.IsToolError(e)
        ? new InvalidDataException($"{_what}: {e.Message}", e)
        : new InvalidDataException($"{_what}: the {_compression.ToString().ToLowerInvariant()} data is corrupt ({e.Message}).", e);

    private Exception Fail(Exception e)
    {
        _fault = e;
        return e;
    }
}
