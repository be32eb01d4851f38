using System.Buffers.Binary;
using System.Security.Cryptography;
using Vessel.Common;

namespace Vessel.Oci;

/// <summary>
/// Errors about content. <see cref="InvalidDataException"/> is sealed, so a blob that does not
/// match its descriptor is marked through <see cref="Exception.Data"/>, which lets layers
/// above tell it from a decoder's complaint and pass it on unchanged.
/// </summary>
internal static class BlobErrors
{
    private const string MismatchKey = "Vessel.Oci.BlobMismatch";

    public static InvalidDataException Mismatch(string message)
    {
        var e = new InvalidDataException(message);
        e.Data[MismatchKey] = true;
        return e;
    }

    public static bool IsMismatch(Exception e) => e is InvalidDataException && e.Data.Contains(MismatchKey);
}

/// <summary>
/// A read-only stream over a blob that hashes every byte and, on the read that reaches the
/// end, checks the SHA-256 and the length against the descriptor: a mismatch throws
/// an <see cref="InvalidDataException"/> (see <see cref="BlobErrors"/>) instead of returning 0. A blob longer than its
/// declared size fails as soon as the excess arrives, so a hostile peer cannot stream forever.
/// The first failure is sticky: later reads throw it again.
/// </summary>
internal sealed class DigestVerifyingStream : ReadOnlyStream
{
    private const int TailSize = 8; // a gzip member trailer: CRC32 + ISIZE

    private readonly Stream _inner;
    private readonly OciDigest? _expected;
    private readonly long? _expectedSize;
    private readonly string _what;
    private readonly IDisposable? _owner;
    private readonly bool _hashing;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly byte[] _tail = new byte[TailSize];
    private long _length;
    private bool _verified;
    private Exception? _fault;

    /// <param name="what">Names the blob in messages ("layer 2 (sha256:...) of alpine:3.20").</param>
    /// <param name="owner">Disposed with this stream (an HTTP response, a file).</param>
    /// <param name="computeDigest">Hash the blob even without <paramref name="expected"/>, for <see cref="Actual"/>.</param>
    public DigestVerifyingStream(Stream inner, OciDigest? expected, long? expectedSize, string what, IDisposable? owner = null, bool computeDigest = false)
    {
        _inner = inner;
        _expected = expected;
        _expectedSize = expectedSize;
        _what = what;
        _owner = owner;
        _hashing = expected is not null || computeDigest;
    }

    /// <summary>The blob's sha256 once the end was reached, where it was hashed (an expected digest, or computeDigest).</summary>
    public OciDigest? Actual { get; private set; }

    /// <summary>The digest the blob must have; null where only its size is known (a docker-archive layer, checked by its diff_id above).</summary>
    public OciDigest? Expected => _expected;

    /// <summary>Bytes left to read when the size is known.</summary>
    public long? Remaining => _expectedSize - _length;

    /// <summary>Bytes read so far.</summary>
    public long BytesRead => _length;

    /// <summary>True once the end was reached and the digest matched.</summary>
    public bool Verified => _verified;

    /// <summary>The last 8 bytes of the blob once the end was reached (a gzip trailer).</summary>
    public ReadOnlySpan<byte> Tail => _tail.AsSpan(0, (int)Math.Min(_length, TailSize));

    public override long Position
    {
        get => _length;
        set => throw new NotSupportedException();
    }

    protected override int ReadCore(Span<byte> buffer)
    {
        if (!Begin(ref buffer))
        {
            return 0;
        }
        int n;
        try
        {
            n = _inner.Read(buffer);
        }
        catch (Exception e) when (e is IOException && e is not InvalidDataException)
        {
            throw Fail(new IOException($"{_what}: reading failed: {e.Message}", e));
        }
        return Account(buffer[..n], buffer.Length);
    }

    protected override async ValueTask<int> ReadCoreAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        Span<byte> probe = buffer.Span;
        if (!Begin(ref probe))
        {
            return 0;
        }
        buffer = buffer[..probe.Length];
        int n;
        try
        {
            n = await _inner.ReadAsync(buffer, cancellationToken);
        }
        catch (Exception e) when (e is IOException && e is not InvalidDataException)
        {
            throw Fail(new IOException($"{_what}: reading failed: {e.Message}", e));
        }
        return Account(buffer.Span[..n], buffer.Length);
    }

    /// <summary>Reads and discards the rest of the blob, which runs the end-of-blob check.</summary>
    public async Task DrainAsync(CancellationToken cancellationToken)
    {
        byte[] scratch = new byte[81920];
        while (await ReadAsync(scratch, cancellationToken) > 0)
        {
        }
    }

    protected override async ValueTask ReleaseAsync()
    {
        await _inner.DisposeAsync();
        _owner?.Dispose();
        _hash.Dispose();
    }

    /// <summary>False when nothing is left to read; clamps the request so that at most one byte past the declared size is read.</summary>
    private bool Begin(ref Span<byte> buffer)
    {
        if (_fault is not null)
        {
            throw _fault;
        }
        if (_verified)
        {
            return false;
        }
        if (_expectedSize is long size)
        {
            long allowed = size - _length + 1;
            if (buffer.Length > allowed)
            {
                buffer = buffer[..(int)allowed];
            }
        }
        return true;
    }

    private int Account(ReadOnlySpan<byte> data, int requested)
    {
        if (data.IsEmpty)
        {
            if (requested > 0)
            {
                Finish();
            }
            return 0;
        }
        _length += data.Length;
        if (_expectedSize is long size && _length > size)
        {
            throw Fail(BlobErrors.Mismatch(
                $"{_what} is longer than the {size} bytes its descriptor declares; the blob does not match its manifest."));
        }
        if (_hashing)
        {
            _hash.AppendData(data);
        }
        RememberTail(data);
        return data.Length;
    }

    private void RememberTail(ReadOnlySpan<byte> data)
    {
        if (data.Length >= TailSize)
        {
            data[^TailSize..].CopyTo(_tail);
            return;
        }
        // Shift the kept bytes left and append the new ones.
        _tail.AsSpan(data.Length).CopyTo(_tail);
        data.CopyTo(_tail.AsSpan(TailSize - data.Length));
    }

    private void Finish()
    {
        if (_expectedSize is long size && _length != size)
        {
            throw Fail(BlobErrors.Mismatch(
                $"{_what} is truncated: it ended after {_length} of the {size} bytes its descriptor declares."));
        }
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        _hash.GetHashAndReset(hash);
        OciDigest actual = OciDigest.FromHash(hash);
        if (_expected is not null && actual != _expected)
        {
            throw Fail(BlobErrors.Mismatch(
                $"{_what} does not match its digest: expected {_expected}, got {actual}. The blob is corrupt or was tampered with."));
        }
        Actual = _hashing ? actual : null;
        if (_length < TailSize)
        {
            // Keep the tail left-aligned for short blobs.
            _tail.AsSpan(TailSize - (int)_length).CopyTo(_tail);
        }
        _verified = true;
    }

    private Exception Fail(Exception e)
    {
        _fault = e;
        return e;
    }

    /// <summary>The ISIZE field of a gzip trailer: the uncompressed length modulo 2^32 (RFC 1952, 2.3.1).</summary>
    public uint GzipTrailerLength => _length >= TailSize ? BinaryPrimitives.ReadUInt32LittleEndian(_tail.AsSpan(4)) : 0;
}
